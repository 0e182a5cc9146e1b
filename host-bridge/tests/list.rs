//! `agentbox list` (`ls`, `ps`): the table, its filters and formats, colours on a terminal
//! only, numbers that never move to another box, and `stop|start|destroy` (`rm`) of
//! several boxes at once.

mod common;

use std::io::{BufRead as _, Read as _, Write as _};
use std::path::Path;
use std::time::Duration;

use common::{eventually, free_port, web_service, Host, TimedOutput, AGENTBOX};

/// The name `list` must show whole, however long.
const LONG: &str = "a-box-name-much-longer-than-any-column-of-the-old-table";

/// The rows of `list`'s table (header first), trailing spaces dropped.
fn lines(text: &str) -> Vec<String> {
    text.lines().map(|l| l.trim_end().to_string()).collect()
}

/// The column where `word` starts in `line`.
fn column(line: &str, word: &str) -> usize {
    line.find(word)
        .unwrap_or_else(|| panic!("no {word:?} in {line:?}"))
}

#[test]
fn list_is_an_aligned_table_with_filters_quiet_json_and_stable_numbers() {
    let host = Host::new();
    let repo = host.repo("proj", "");
    for name in [LONG, "b2", "b3"] {
        host.ok(&repo, &["create", "--name", name]);
    }

    // The table: a header, every name whole, every column where its header is.
    let table = host.ok(&repo, &["list"]);
    let rows = lines(&table);
    assert_eq!(rows.len(), 4, "{table}");
    let header = &rows[0];
    for word in [
        "#", "NAME", "PROVIDER", "STATE", "AGENTS", "CREATED", "PROJECT",
    ] {
        assert!(header.contains(word), "{header}");
    }
    assert!(
        !table.contains('\u{1b}'),
        "no colours off a terminal: {table:?}"
    );
    for (row, name) in rows[1..].iter().zip([LONG, "b2", "b3"]) {
        assert_eq!(column(row, name), column(header, "NAME"), "{table}");
        assert_eq!(column(row, "local"), column(header, "PROVIDER"), "{table}");
        assert_eq!(column(row, "running"), column(header, "STATE"), "{table}");
        let created = &row[column(header, "CREATED")..];
        assert!(
            created.starts_with("just now") || created.contains(" s ago"),
            "a relative age: {row}"
        );
    }
    // The aliases are the same command.
    for alias in ["ls", "ps"] {
        assert_eq!(lines(&host.ok(&repo, &[alias]))[0], *header);
    }

    // Names only, for scripts; filters narrow; a bad filter says what is allowed.
    assert_eq!(host.ok(&repo, &["list", "-q"]), format!("{LONG}\nb2\nb3\n"));
    assert_eq!(
        host.ok(&repo, &["list", "-q", "--filter", "name=b2"]),
        "b2\n"
    );
    let project = repo.to_string_lossy().into_owned();
    assert_eq!(
        host.ok(
            &repo,
            &[
                "list",
                "-q",
                "--filter",
                "state=running",
                "--filter",
                &format!("project={project}")
            ]
        )
        .lines()
        .count(),
        3
    );
    assert_eq!(
        host.ok(&repo, &["list", "-q", "--filter", "provider=docker"]),
        ""
    );
    let bad = host.run(&repo, &["list", "--filter", "colour=red"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("use name, provider, state or project"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    // `--format json` is `--json`.
    let json: serde_json::Value =
        serde_json::from_str(&host.ok(&repo, &["list", "--format", "json"])).expect("json");
    let old: serde_json::Value =
        serde_json::from_str(&host.ok(&repo, &["list", "--json"])).expect("json");
    assert_eq!(json, old);
    assert_eq!(json.as_array().map(Vec::len), Some(3));

    // Several boxes at once; a number names its box for good.
    host.ok(&repo, &["stop", "b2", "3"]);
    assert_eq!(
        host.ok(&repo, &["list", "-q", "--filter", "state=stopped"]),
        "b2\nb3\n"
    );
    host.ok(&repo, &["start", "2", "b3"]);
    host.ok(&repo, &["rm", "-y", "--force", "2"]);
    host.fails(&repo, &["status", "2"], "there is no box number 2");
    host.ok(&repo, &["create", "--name", "b4"]);
    host.fails(&repo, &["status", "2"], "there is no box number 2");
    let numbers: Vec<(String, u64)> = host
        .list(&repo)
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap_or_default().to_string(),
                b["index"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        numbers,
        [(LONG.to_string(), 1), ("b3".into(), 3), ("b4".into(), 4)]
    );
    assert!(host
        .ok(&repo, &["status", "3", "--json"])
        .contains("\"b3\""));

    // One failure does not stop the rest, and is named.
    let out = host.run(&repo, &["destroy", "-y", "--force", "nope", "b4", "b3"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope: no box named `nope`"));
    assert_eq!(host.ok(&repo, &["list", "-q"]), format!("{LONG}\n"));
}

/// `agentbox list` run in a terminal, with `env`: everything it printed.
fn list_on_a_terminal(host: &Host, cwd: &Path, env: &[(&str, &str)]) -> String {
    let pty = portable_pty::native_pty_system()
        .openpty(portable_pty::PtySize {
            rows: 24,
            cols: 200,
            pixel_width: 0,
            pixel_height: 0,
        })
        .expect("openpty");
    let mut command = portable_pty::CommandBuilder::new(AGENTBOX);
    command.arg("list");
    command.cwd(cwd);
    command.env("AGENTBOX_HOME", host.home());
    command.env_remove("NO_COLOR");
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = pty.slave.spawn_command(command).expect("spawn agentbox");
    drop(pty.slave);
    let mut reader = pty.master.try_clone_reader().expect("reader");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        let _ = tx.send(out);
    });
    // The terminal ends (EIO) once `agentbox` has exited.
    let out = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("agentbox list on a terminal ends within 30 s");
    // Its end closed the terminal: its status follows at once (no bare `wait`, which a
    // client that closed the terminal and lived on would hang).
    let mut status = None;
    assert!(
        eventually(|| {
            status = child.try_wait().expect("try_wait");
            status.is_some()
        }),
        "agentbox list closed the terminal and did not exit"
    );
    let status = status.expect("exit status");
    assert!(status.success(), "agentbox list on a terminal: {status:?}");
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn states_are_coloured_on_a_terminal_unless_no_color() {
    let host = Host::new();
    let repo = host.repo("proj", "");
    host.ok(&repo, &["create", "--name", "b1"]);
    let coloured = list_on_a_terminal(&host, &repo, &[]);
    assert!(
        coloured.contains("\u{1b}[38;5;10mrunning") || coloured.contains("\u{1b}[32mrunning"),
        "a green state: {coloured:?}"
    );
    let plain = list_on_a_terminal(&host, &repo, &[("NO_COLOR", "1")]);
    assert!(plain.contains("running"), "{plain:?}");
    assert!(!plain.contains("\u{1b}["), "NO_COLOR: {plain:?}");
}

/// What bash completes for `words` (the last one being completed), with the script of
/// `agentbox completions bash` loaded, as a user's shell would.
fn bash_completes(host: &Host, cwd: &Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let script = format!(
        "source <(agentbox completions bash) || exit 1\n\
         COMP_WORDS=({words}); COMP_CWORD={index}; COMP_TYPE=9\n\
         _clap_complete_agentbox agentbox {current} {previous}\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        words = quoted.join(" "),
        index = words.len() - 1,
        current = quoted[words.len() - 1],
        previous = quoted[words.len() - 2],
    );
    let bin = Path::new(AGENTBOX).parent().expect("bin dir");
    let out = std::process::Command::new("bash")
        .args(["--norc", "-c", &script])
        .current_dir(cwd)
        .env("AGENTBOX_HOME", host.home())
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .timed_output()
        .expect("bash");
    assert!(
        out.status.success(),
        "bash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut words: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    words.sort();
    words
}

#[test]
fn completion_offers_this_machines_boxes_and_sessions() {
    let host = Host::new();
    let repo = host.repo("proj", "");
    host.ok(&repo, &["create", "--name", "cb-one"]);
    host.ok(
        &repo,
        &["run", "-d", "--name", "cb-two", "--", "sleep", "300"],
    );
    host.ok(&repo, &["create", "--name", "other"]);
    assert_eq!(
        bash_completes(&host, &repo, &["agentbox", "stop", "cb"]),
        ["cb-one", "cb-two"]
    );
    assert_eq!(
        bash_completes(&host, &repo, &["agentbox", "rm", "o"]),
        ["other"]
    );
    // The sessions of the box named on the line.
    assert_eq!(
        bash_completes(
            &host,
            &repo,
            &["agentbox", "attach", "cb-two", "--session", ""]
        ),
        ["agent"]
    );
    // Subcommands still complete.
    assert!(bash_completes(&host, &repo, &["agentbox", "lis"]).contains(&"list".to_string()));
    // The services of the box named on the line (a service of a box of another repo).
    let served = host.repo("served", &web_service(free_port()));
    host.ok(&served, &["create", "--name", "cb-svc"]);
    assert_eq!(
        bash_completes(&host, &repo, &["agentbox", "logs", "cb-svc", "w"]),
        ["web"]
    );
}

/// A teammate's box (`agentbox join`) is answered by its owner's host bridge, never by
/// this one: `list` of a home holding joined boxes only says nothing of this machine's
/// bridge (it said "host bridge not running: boxes' requests wait; `agentbox bridge
/// start`", which no joined box waits on); with a box of its own stopped bridge is named.
#[test]
fn a_home_with_only_joined_boxes_is_not_told_its_bridge_is_down() {
    use agentbox_protocol::share::{Invite, RelayAddress, Scope, ShareId, ShareToken};
    let host = Host::new();
    // The owner's relay as `join` sees it: `GET /v1/terms` answered with no terminals.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = std::io::BufReader::new(conn.try_clone().expect("clone"));
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n[]",
            );
        }
    });
    let invite: Invite = serde_json::from_value(serde_json::json!({
        "provider": "docker",
        "box_name": "theirs",
        "relay": RelayAddress::Loopback { url: format!("http://127.0.0.1:{port}") },
        "web_url": null,
        "share_id": ShareId::generate().expect("id"),
        "token": ShareToken::generate().expect("token"),
        "scopes": [Scope::AttachRead],
        "expires_at_ms": agentbox_protocol::now_millis() + 3_600_000,
    }))
    .expect("an invite");
    let cwd = host.dir.path();
    host.ok(cwd, &["join", &invite.encode()]);
    let shown = host.ok(cwd, &["list"]);
    assert!(
        shown.contains("theirs") && !shown.contains("host bridge not running"),
        "{shown}"
    );
    // A box of this machine's own does wait on its bridge.
    let repo = host.repo("own", "");
    host.ok(&repo, &["create", "--name", "mine"]);
    host.ok(&repo, &["bridge", "stop"]);
    assert!(host
        .ok(&repo, &["list"])
        .contains("host bridge not running"));
    host.ok(&repo, &["destroy", "-y", "--force", "mine"]);
}
