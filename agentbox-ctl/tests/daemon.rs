//! The daemon as a process: single instance, hostile clients, version mismatch, secrets,
//! degraded mode, logs, shutdown.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::{eventually, pid_alive, read_pid, TestBox, CTL};

#[test]
fn a_second_daemon_refuses_to_start() {
    let mut b = TestBox::new("services:\n  s: {command: 'exec sleep 100'}\n");
    // A run dir made before the daemon (as an image's `mkdir` does) with the usual 0755.
    std::fs::create_dir_all(b.run_dir()).expect("mkdir");
    std::fs::set_permissions(b.run_dir(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    b.start();
    let out = b.ctl(&["daemon"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("another agentbox-ctl daemon is already running"),
        "{stderr}"
    );
    // The first one is unharmed and still owns its socket.
    b.ok(&["status"]);
    let mode = std::fs::metadata(b.run_dir().join("ctl.sock"))
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // … under a run dir only the box's user may enter.
    let mode = std::fs::metadata(b.run_dir())
        .expect("run dir")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "run dir mode {:o}", mode & 0o777);
}

/// Reads what the daemon sends until it closes the connection; a daemon that holds a
/// hostile connection open instead fails the read with a timeout.
fn read_until_closed(s: &mut UnixStream, what: &str) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut reply = Vec::new();
    if let Err(e) = s.read_to_end(&mut reply) {
        panic!("{what}: the daemon did not close the connection ({e}); read so far: {reply:?}");
    }
    reply
}

/// Splits `bytes` into whole length-prefixed frames; panics on a partial one.
fn frames(bytes: &[u8], what: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        assert!(rest.len() >= 4, "{what}: a partial header in {bytes:?}");
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        assert!(
            rest.len() >= 4 + len,
            "{what}: a partial frame in {bytes:?}"
        );
        out.push(rest[4..4 + len].to_vec());
        rest = &rest[4 + len..];
    }
    out
}

#[test]
fn hostile_clients_get_errors_and_the_daemon_keeps_serving() {
    use agentbox_protocol::ctl::CtlResponse;
    use agentbox_protocol::frame::{decode_message, encode_message};
    use agentbox_protocol::{ErrorCode, Hello};
    let mut b = TestBox::new("");
    b.start();
    let socket = b.run_dir().join("ctl.sock");
    // Nothing of these can be answered in a frame the client would read (no hello came):
    // each is closed at once, with nothing sent.
    let attacks: Vec<(&str, Vec<u8>)> = vec![
        ("HTTP", b"GET / HTTP/1.1\r\n\r\n".to_vec()),
        ("a 4 GiB length prefix", vec![0xff; 4]),
        ("a truncated frame", vec![0, 0, 0, 5, 1, 2]),
        ("a garbage hello", vec![0, 0, 0, 3, 0xde, 0xad, 0xbe]),
        ("connect and close", Vec::new()),
    ];
    for (what, attack) in attacks {
        let mut s = UnixStream::connect(&socket).expect("connect");
        let _ = s.write_all(&attack);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let reply = read_until_closed(&mut s, what);
        assert!(reply.is_empty(), "{what}: answered {reply:?}");
    }
    // A valid hello followed by a garbage request: the daemon's hello, then an error reply.
    let mut s = UnixStream::connect(&socket).expect("connect");
    let hello = encode_message(&Hello::new("test", "0")).expect("encode");
    s.write_all(&(hello.len() as u32).to_be_bytes())
        .expect("write");
    s.write_all(&hello).expect("write");
    s.write_all(&[0, 0, 0, 2, 0xee, 0xee]).expect("write");
    let reply = read_until_closed(&mut s, "a garbage request");
    let frames = frames(&reply, "a garbage request");
    assert_eq!(frames.len(), 2, "expected a hello and an error: {reply:?}");
    let theirs: Hello = decode_message(&frames[0]).expect("the daemon's hello");
    assert_eq!(theirs.program, "agentbox-ctl daemon");
    match decode_message::<CtlResponse>(&frames[1]).expect("a response") {
        CtlResponse::Error(e) => {
            assert_eq!(e.code, ErrorCode::BadRequest, "{e:?}");
            assert!(e.message.starts_with("unreadable request"), "{e:?}");
        }
        other => panic!("a garbage request was answered {other:?}"),
    }
    b.ok(&["status"]);
}

#[test]
fn a_version_mismatch_names_the_stale_side() {
    use agentbox_protocol::ctl::{CtlRequest, CtlResponse};
    use agentbox_protocol::hello::server_handshake;
    use agentbox_protocol::Hello;
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("ctl.sock");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let listener = rt
        .block_on(async { tokio::net::UnixListener::bind(&socket) })
        .expect("bind");
    let old = Hello {
        protocol_version: 0,
        program: "agentbox-ctl daemon".into(),
        version: "0.0.9".into(),
    };
    let server = std::thread::spawn(move || {
        rt.block_on(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let _ = server_handshake::<_, CtlRequest, CtlResponse>(stream, &old).await;
        });
    });
    let out = std::process::Command::new(CTL)
        .arg("status")
        .env("AGENTBOX_RUN_DIR", dir.path())
        .output()
        .expect("run");
    server.join().expect("server");
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("agentbox-ctl 0.1.0 cannot talk to agentbox-ctl daemon 0.0.9")
            && stderr.contains("restart agentbox-ctl daemon so that it runs the new version"),
        "{stderr}"
    );
}

#[test]
fn no_daemon_is_a_clear_error() {
    let b = TestBox::new("");
    let out = b.ctl(&["status"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the agentbox-ctl daemon"));
}

#[test]
fn services_do_not_inherit_tokens() {
    let mut b = TestBox::new(
        "services:\n  s: {command: 'env > env.txt; exec sleep 100', env: {MINE: 'yes'}}\n",
    )
    .with_env("AGENTBOX_BRIDGE_TOKEN", "secret-bridge-token")
    .with_env("AGENTBOX_RELAY_TOKEN", "secret-relay-token");
    b.start();
    b.ok(&["wait-ready"]);
    let path = b.workspace().join("env.txt");
    assert!(eventually(Duration::from_secs(5), || {
        std::fs::read_to_string(&path).is_ok_and(|s| s.contains("MINE=yes"))
    }));
    let env = std::fs::read_to_string(&path).expect("env");
    assert!(
        !env.contains("secret-"),
        "a token leaked into a service: {env}"
    );
    assert!(env.contains("AGENTBOX_UNIT=s"));
}

#[test]
fn a_broken_config_runs_degraded_until_reload() {
    let mut b = TestBox::new("services:\n  s: {command: 'exec sleep 100', restart: bogus}\n");
    b.start();
    let status = b.status_json();
    let error = status["daemon"]["config_error"]
        .as_str()
        .expect("config_error");
    assert!(
        error.contains("agentbox.yaml:2:43: `restart` must be"),
        "{error}"
    );
    let human = b.ok(&["status"]);
    assert!(human.contains("CONFIG ERROR"), "{human}");
    b.write_config("services:\n  s: {command: 'exec sleep 100'}\n");
    assert_eq!(
        b.ok(&["reload"]),
        "added: s\nremoved: (none)\nchanged: (none)\n"
    );
    b.ok(&["wait-ready"]);
    assert!(b.status_json()["daemon"]["config_error"].is_null());
}

#[test]
fn logs_tail_and_follow_across_rotation() {
    let mut b = TestBox::new(
        "services:\n  talker: {command: 'for i in $(seq 1 400); do echo \"line $i\"; sleep 0.005; done; exec sleep 100'}\n",
    )
    .with_env("AGENTBOX_LOG_MAX_BYTES", "2000");
    b.start();
    let mut follow = std::process::Command::new(CTL);
    follow
        .args(["logs", "talker", "-f", "-n", "0"])
        .env("AGENTBOX_RUN_DIR", b.run_dir())
        .env("AGENTBOX_LOG_DIR", b.log_dir())
        .stdout(std::process::Stdio::piped());
    let mut child = follow.spawn().expect("follow");
    let mut stdout = child.stdout.take().expect("stdout");
    let path = b.log_dir().join("talker.log");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let mut buf = [0u8; 4096];
        while !text.contains("line 400\n") {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        text
    });
    let text = reader.join().expect("reader");
    let _ = child.kill();
    let _ = child.wait();
    let lines: Vec<&str> = text.lines().filter_map(|l| l.split(" O ").nth(1)).collect();
    // -n 0 starts at the end: whatever came first, from there on nothing is lost or repeated.
    let first: usize = lines
        .first()
        .and_then(|l| l.strip_prefix("line "))
        .and_then(|n| n.parse().ok())
        .expect("a line");
    let expected: Vec<String> = (first..=400).map(|i| format!("line {i}")).collect();
    assert_eq!(lines, expected);
    assert!(
        std::path::Path::new(&format!("{}.1", path.display())).exists(),
        "the log never rotated"
    );
    assert!(std::fs::metadata(&path).expect("log").len() <= 2000);
    let tail = b.ok(&["logs", "talker", "-n", "3"]);
    let tail: Vec<&str> = tail.lines().filter_map(|l| l.split(" O ").nth(1)).collect();
    assert_eq!(tail, ["line 398", "line 399", "line 400"]);
}

#[test]
fn shutdown_stops_every_unit() {
    let mut b = TestBox::new(
        "services:\n  a: {command: 'sleep 1000 & echo $! > a.pid; exec sleep 1000'}\n  b: {command: 'exec sleep 1000'}\n",
    );
    b.start();
    b.ok(&["wait-ready"]);
    let child = read_pid(&b.workspace().join("a.pid"));
    let pids: Vec<u32> = ["a", "b"]
        .iter()
        .map(|n| b.unit(n)["pid"].as_u64().expect("pid") as u32)
        .collect();
    b.stop_daemon();
    for pid in pids.into_iter().chain([child]) {
        assert!(
            eventually(Duration::from_secs(5), || !pid_alive(pid)),
            "{pid} survived the daemon"
        );
    }
    assert!(!b.run_dir().join("ctl.sock").exists());
}

#[test]
fn sigterm_stops_the_daemon_and_its_units() {
    let mut b = TestBox::new("services:\n  a: {command: 'exec sleep 1000'}\n");
    b.start();
    b.ok(&["wait-ready"]);
    let pid = b.unit("a")["pid"].as_u64().expect("pid") as u32;
    let daemon = b.daemon.as_ref().expect("daemon").id();
    std::process::Command::new("kill")
        .arg(daemon.to_string())
        .status()
        .expect("kill");
    assert!(eventually(Duration::from_secs(5), || !pid_alive(pid)));
    let mut child = b.daemon.take().expect("daemon");
    assert!(child.wait().expect("wait").success());
}

#[test]
fn a_bad_dind_setting_is_named() {
    let b = TestBox::new("").with_env("AGENTBOX_DIND", "maybe");
    let out = b.ctl(&["daemon"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("AGENTBOX_DIND=maybe: use 1"), "{stderr}");
}

#[test]
fn a_new_daemon_ends_the_units_a_killed_one_left() {
    let mut b = TestBox::new(
        "services:\n  a: {command: 'sleep 1000 & echo $! > a.pid; exec sleep 1000'}\n",
    );
    b.start();
    b.ok(&["wait-ready"]);
    let leader = b.unit("a")["pid"].as_u64().expect("pid") as u32;
    let child = read_pid(&b.workspace().join("a.pid"));
    // SIGKILL: the daemon gets no chance to stop its units.
    let mut daemon = b.daemon.take().expect("daemon");
    daemon.kill().expect("kill -9 the daemon");
    daemon.wait().expect("wait");
    assert!(
        pid_alive(leader) && pid_alive(child),
        "the unit died with the daemon"
    );
    std::fs::remove_file(b.workspace().join("a.pid")).expect("rm a.pid");

    b.start();
    let orphans_gone = eventually(Duration::from_secs(5), || {
        !pid_alive(leader) && !pid_alive(child)
    });
    for pid in [leader, child] {
        if pid_alive(pid) {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
    }
    assert!(
        orphans_gone,
        "the new daemon left the old unit's group running"
    );
    // Its own run of the unit is up and recorded.
    b.ok(&["wait-ready"]);
    assert_ne!(b.unit("a")["pid"].as_u64(), Some(u64::from(leader)));
}
