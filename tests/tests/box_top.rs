//! `agentbox top` (issue 22 item 3): its `--json` numbers move when a box burns CPU — a
//! busy loop started with `exec -d` is listed first and the box's CPU rises — on a local,
//! a docker and a Daytona-fake box; and a relay that forges its stats answer (huge,
//! garbage, impossible numbers, escapes in strings) is refused with a clear error, nothing
//! of it printed raw.
//!
//! Needs a running Docker engine and the offline base image for the docker and Daytona
//! halves (`scripts/test`).

#[allow(dead_code)]
mod docker_common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};

use agentbox_tests::daytona_host::{git_repo, DaytonaHost};
use docker_common::Host;

/// The busy loop.
const BURN: &str = "while :; do :; done";

/// The first box of `top NAME --json`'s answer, which must succeed.
fn sample(run: &dyn Fn(&[&str]) -> Output, name: &str) -> serde_json::Value {
    let args = ["top", name, "--json", "-n", "5"];
    let out = run(&args);
    let text = agentbox_tests::succeeded(&args, &out);
    let v: serde_json::Value = serde_json::from_str(&text).expect("top --json");
    let row = v[0].clone();
    assert_eq!(row["name"], name, "{text}");
    assert_eq!(row["state"], "running", "{text}");
    row["stats"].clone()
}

fn cores(stats: &serde_json::Value) -> f64 {
    stats["cpu"]["used_cores"].as_f64().expect("used_cores")
}

/// Starts the busy loop in box `name`, sees it first with the box's CPU up, kills it and
/// sees it gone.
fn burn_and_see(run: &dyn Fn(&[&str]) -> Output, name: &str) {
    let idle = sample(run, name);
    let mem = &idle["memory"];
    assert!(
        mem["used_bytes"].as_u64() > Some(0)
            && mem["limit_bytes"].as_u64() >= mem["used_bytes"].as_u64(),
        "{idle}"
    );
    assert!(idle["disk"]["size_bytes"].as_u64() > Some(0), "{idle}");
    assert!(idle["cpu"]["limit_cores"].as_f64() > Some(0.0), "{idle}");
    let before = cores(&idle);

    agentbox_tests::succeeded(&["exec -d"], &run(&["exec", "-d", name, "sh", "-c", BURN]));
    let mut hot = None;
    let mut last = serde_json::Value::Null;
    // Each sample covers at least the relay's shortest window (250 ms): no sleep needed.
    for _ in 0..40 {
        let s = sample(run, name);
        let first = s["processes"][0]["command"].as_str().unwrap_or_default();
        // A loaded machine (a 2-core CI runner, suites in parallel) gives the loop far
        // less than a core: a tenth of one is still a clear rise over an idle box (0.00x).
        if first.contains(BURN) && cores(&s) >= 0.1 {
            hot = Some(s);
            break;
        }
        last = s;
    }
    let hot = hot.unwrap_or_else(|| {
        panic!("the busy loop never showed first with the box's CPU up (idle {before:.2} cores); last sample: {last}")
    });
    eprintln!(
        "{name}: idle {before:.2} cores, burning {:.2} cores ({:.0}% of {} cores), source {}",
        cores(&hot),
        hot["cpu"]["percent"].as_f64().unwrap_or(0.0),
        hot["cpu"]["limit_cores"],
        hot["source"]
    );
    assert!(cores(&hot) >= before + 0.05, "{hot}");
    let burner = &hot["processes"][0];
    assert!(burner["cpu_percent"].as_f64() >= Some(10.0), "{hot}");
    let pid_number = burner["pid"].as_u64().expect("pid");
    let pid = pid_number.to_string();

    agentbox_tests::succeeded(&["exec kill"], &run(&["exec", name, "kill", &pid]));
    let listed = |s: &serde_json::Value| {
        s["processes"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["pid"].as_u64() == Some(pid_number)))
    };
    let mut gone = false;
    for _ in 0..20 {
        let s = sample(run, name);
        if !listed(&s) {
            gone = true;
            break;
        }
    }
    assert!(gone, "the killed busy loop ({pid}) is still listed");
}

#[test]
fn top_json_follows_a_busy_loop_on_a_local_box() {
    let host = Host::new();
    let repo = host.project("proj");
    let name = format!("top-local-{}", std::process::id());
    host.ok(&repo, &["create", "--provider", "local", "--name", &name]);
    burn_and_see(&|args| host.run(&repo, args), &name);
    // The plain one-shot text off a terminal names the box and its CPU.
    let text = host.ok(&repo, &["top", &name]);
    assert!(text.contains(&name) && text.contains("CPU"), "{text}");
    live_table_redraws_and_q_restores_the_terminal(&host, &repo, &name);
    let _ = host.run(&repo, &["destroy", &name, "-y", "--force"]);
}

/// `top NAME` on a terminal: the table drawn on the alternate screen and redrawn; `q`
/// ends it with the cursor shown and the main screen back.
fn live_table_redraws_and_q_restores_the_terminal(host: &Host, repo: &Path, name: &str) {
    use std::io::Read;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    let pty = portable_pty::native_pty_system()
        .openpty(portable_pty::PtySize {
            rows: 30,
            cols: 120,
            pixel_width: 0,
            pixel_height: 0,
        })
        .expect("openpty");
    let mut command = portable_pty::CommandBuilder::new(agentbox_tests::bin_path("agentbox"));
    command.args(["top", name, "--interval", "300ms"]);
    command.cwd(repo);
    command.env("AGENTBOX_HOME", host.home());
    let mut child = pty.slave.spawn_command(command).expect("spawn top");
    drop(pty.slave);
    let mut reader = pty.master.try_clone_reader().expect("reader");
    let mut writer = pty.master.take_writer().expect("writer");
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let header = b"agentbox top";
    let count = |bytes: &[u8]| bytes.windows(header.len()).filter(|w| w == header).count();
    while count(&seen) < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(bytes) => seen.extend(bytes),
            Err(e) => panic!(
                "top never drew its table twice ({e}): {}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert!(text.starts_with("\x1b[?1049h"), "{text:?}");
    assert!(text.contains(name) && text.contains("CPU"), "{text:?}");
    writer.write_all(b"q").expect("q");
    writer.flush().expect("flush");
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait());
    });
    let status = done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("q ends top")
        .expect("wait");
    assert!(status.success(), "{status:?}");
    // What it wrote last: the cursor shown and the main screen back.
    while let Ok(bytes) = rx.recv_timeout(Duration::from_secs(2)) {
        seen.extend(bytes);
    }
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert!(
        text.trim_end().ends_with("\x1b[?25h\x1b[?1049l"),
        "{text:?}"
    );
}

#[test]
fn top_json_follows_a_busy_loop_on_a_docker_box() {
    let host = Host::new();
    let repo = host.project("proj");
    host.prepare(&repo);
    let name = format!("top-docker-{}", std::process::id());
    host.ok(&repo, &["create", "--provider", "docker", "--name", &name]);
    burn_and_see(&|args| host.run(&repo, args), &name);
}

#[test]
fn top_json_follows_a_busy_loop_on_a_daytona_box() {
    let host = DaytonaHost::start(
        "dtn_top0123456789abcdef",
        &[("DAYTONA_FAKE_TRANSITION_MS", "100")],
    );
    let repo = git_repo(&host.dir.path().join("proj"), "seeded\n");
    host.login(&repo);
    host.prepare(&repo);
    let name = format!("top-daytona-{}", std::process::id());
    host.ok(&repo, &["create", "--provider", "daytona", "--name", &name]);
    burn_and_see(&|args| host.run(&repo, args), &name);
}

/// A relay on 127.0.0.1 that answers its Nth request with `answers[N]` (status 200, JSON
/// content type, no announced length) and 404 after them.
fn forging_relay(answers: Vec<Vec<u8>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let answers = Arc::new(Mutex::new(answers.into_iter()));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if line == "\r\n" => break,
                    Ok(_) => {}
                }
            }
            let next = answers.lock().map_or(None, |mut a| a.next());
            let Some(body) = next else {
                let _ = conn.write_all(
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
                continue;
            };
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n",
            );
            // The host may stop reading a huge one: that ends the write.
            for piece in body.chunks(1 << 20) {
                if conn.write_all(piece).is_err() {
                    break;
                }
            }
        }
    });
    port
}

/// A command line with terminal escapes, a C1 control and a right-to-left override.
const EVIL: &str = "evil \x1b[2J\x1b]0;pwned\x07 \u{9b}31m \u{202e}txt.exe";

/// A well-formed sample with `processes` processes whose command is `command`.
fn forged(processes: usize, command: &str, percent: f64) -> Vec<u8> {
    let p = serde_json::json!({
        "pid": 7, "user": "agent", "cpu_percent": 99.0, "rss_bytes": 4096, "command": command,
    });
    serde_json::to_vec(&serde_json::json!({
        "at_ms": 1, "window_ms": 500, "source": "cgroup_v2",
        "cpu": {"used_cores": 1.0, "limit_cores": 2.0, "percent": percent},
        "memory": {"used_bytes": 1024, "limit_bytes": 4096},
        "disk": {"used_bytes": 1, "size_bytes": 2},
        "process_count": 1000,
        "processes": vec![p; processes],
    }))
    .expect("json")
}

#[test]
fn a_forged_stats_answer_is_refused_and_nothing_raw_is_printed() {
    let host = Host::new();
    let repo = host.project("proj");
    let name = format!("top-forged-{}", std::process::id());
    host.ok(&repo, &["create", "--provider", "local", "--name", &name]);
    let mut huge = b"{\"at_ms\":1,\"pad\":\"".to_vec();
    huge.resize(8 << 20, b'a');
    let answers = vec![
        huge,
        b"{\"at_ms\":\"\x1b]0;pwned\x07\x1b[2J\"}".to_vec(),
        forged(40, "x", 50.0),
        forged(1, "x", 1e300),
        forged(1, EVIL, 50.0),
        forged(1, EVIL, 50.0),
    ];
    let port = forging_relay(answers);
    // The box runs; its record now names the forging relay.
    let state = agentbox::state::State::open(&host.home().join("state.db")).expect("state");
    state
        .update(&name, "ready", Some(&format!("http://127.0.0.1:{port}")))
        .expect("point the record at the forging relay");
    let refused = |expected: &str| {
        let out = host.run(&repo, &["top", &name, "--json"]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        eprint!("refused: {stderr}");
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in {stderr}"
        );
        assert!(stderr.contains("refused"), "{stderr}");
        for stream in [&out.stdout, &out.stderr] {
            assert!(
                !stream.contains(&0x1b) && !stream.contains(&0x07),
                "raw bytes printed: {stderr}"
            );
        }
    };
    refused("65536 bytes");
    refused("not what the host expects");
    refused("40 processes listed, more than 32");
    refused("impossible value");
    // A valid answer whose command carries escapes: shown, escaped.
    let out = host.run(&repo, &["top", &name]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprint!("shown: {text}");
    assert!(out.status.success(), "{text}");
    assert!(text.contains("evil \\x1b[2J"), "{text}");
    assert!(
        !out.stdout.contains(&0x1b) && !text.contains('\u{202e}'),
        "{text}"
    );
    // And so in JSON, which a terminal may show too.
    let out = host.run(&repo, &["top", &name, "--json"]);
    let json = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    let command = v[0]["stats"]["processes"][0]["command"]
        .as_str()
        .unwrap_or_default();
    assert!(command.starts_with("evil \\x1b[2J"), "{json}");
    assert!(
        !command.contains(['\u{1b}', '\u{9b}', '\u{202e}'])
            && !json.contains(['\u{9b}', '\u{202e}']),
        "{json}"
    );
    let _ = host.run(&repo, &["destroy", &name, "-y", "--force"]);
}
