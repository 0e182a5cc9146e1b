//! `agentbox logs`, `services`, `url --open` and `port` on a local and a docker box (issue
//! 21): the log of one unit and of all, escaped, `--json`, `-f` ending on Ctrl-C and when
//! the box stops; the services with their state, port and address; the browser given the
//! address; a forward of a port no agentbox.yaml declares, bytes both ways over several
//! connections at once, a refused target reported, Ctrl-C ending it cleanly.
//!
//! The echo servers are perl (the box image has no python or netcat). Needs a running
//! Docker engine and the offline base image for the docker half (`scripts/test`).

#[allow(dead_code)]
mod docker_common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use agentbox_tests::bin_path;
use agentbox_tests::daytona_host::{git_repo, DaytonaHost};
use agentbox_tests::run::{finish_within, COMMAND_LIMIT};
use docker_common::{commit, git, Host};

/// A TCP echo server on 127.0.0.1:PORT (one process per connection) that first prints a
/// line with a terminal escape in it.
const ECHO: &str = r#"use IO::Socket::INET; $|=1; my $s=IO::Socket::INET->new(LocalAddr=>"127.0.0.1",LocalPort=>$ARGV[0],Listen=>16,ReuseAddr=>1) or die "listen: $!"; print "hello \x1b[31mred from $ARGV[0]\n"; $SIG{CHLD}="IGNORE"; while(my $c=$s->accept){ if(!fork){ while(sysread($c,my $b,65536)){ syswrite($c,$b) } exit } }"#;

/// A port free on this machine now (local boxes share its ports).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Where `agentbox` runs: its home and environment.
trait Runner {
    /// `agentbox ARGS` in `cwd`.
    fn command(&self, cwd: &Path, args: &[&str]) -> Command;
    /// A scratch directory of the test's own.
    fn scratch(&self) -> &Path;
    /// `agentbox ARGS` run to its end.
    fn run(&self, cwd: &Path, args: &[&str]) -> std::process::Output {
        use agentbox_tests::run::{limit_for, TimedOutput};
        self.command(cwd, args)
            .stdin(Stdio::null())
            .output_within(limit_for(args))
            .expect("run agentbox")
    }
    /// `agentbox ARGS`, which must succeed; its stdout.
    fn ok(&self, cwd: &Path, args: &[&str]) -> String {
        agentbox_tests::succeeded(args, &self.run(cwd, args))
    }
}

impl Runner for Host {
    fn command(&self, cwd: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(bin_path("agentbox"));
        c.args(args)
            .current_dir(cwd)
            .env("AGENTBOX_HOME", self.home());
        c
    }
    fn scratch(&self) -> &Path {
        self.dir.path()
    }
}

fn agentbox(host: &impl Runner, cwd: &Path, args: &[&str]) -> Command {
    let mut c = host.command(cwd, args);
    c.process_group(0);
    c
}

/// Ctrl-C to `child` (SIGINT, as the terminal sends it).
fn sigint(child: &Child) {
    use agentbox_tests::run::TimedOutput;
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .timed_output()
        .expect("kill");
    assert!(sent.status.success(), "{sent:?}");
}

/// The first line of `child`'s stdout that contains `needle` (and the reader, to go on).
fn wait_for_line(out: &mut BufReader<std::process::ChildStdout>, needle: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        let n = out.read_line(&mut line).expect("read");
        assert!(n > 0, "stdout ended before a line with `{needle}`");
        if line.contains(needle) {
            return line;
        }
    }
}

/// Connects to the forward and checks a round trip of `bytes`.
fn echo_through(port: u16, bytes: &[u8]) {
    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect to the forward");
    c.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    c.write_all(bytes).expect("write");
    let mut back = vec![0u8; bytes.len()];
    c.read_exact(&mut back).expect("echo");
    assert_eq!(back, bytes);
}

fn scenario(host: &impl Runner, repo: &Path, name: &str, provider: &str, ports: (u16, u16, u16)) {
    let (declared, undeclared, closed) = ports;
    let yaml = format!(
        "services:\n  echo:\n    command: [perl, -e, '{e}', '{declared}']\n    ready_when: {{port: {declared}}}\n    expose: {{port: {declared}}}\n  raw:\n    command: [perl, -e, '{e}', '{undeclared}']\n    ready_when: {{port: {undeclared}}}\n",
        e = ECHO.replace('\'', "''"),
    );
    std::fs::write(repo.join("agentbox.yaml"), yaml).expect("yaml");
    git(repo, &["add", "agentbox.yaml"]);
    commit(repo, "services");
    host.ok(repo, &["create", "--provider", provider, "--name", name]);

    // services: both, with state; the exposed one with its port and an address.
    let json = host.ok(repo, &["services", name, "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&json).expect("services --json");
    let echo = rows
        .as_array()
        .and_then(|r| r.iter().find(|s| s["name"] == "echo"))
        .unwrap_or_else(|| panic!("{json}"));
    assert_eq!(echo["port"], u64::from(declared), "{json}");
    assert_eq!(echo["state"], "ready", "{json}");
    assert!(
        echo["url"].as_str().is_some_and(|u| u.starts_with("http")),
        "{json}"
    );
    let raw = rows
        .as_array()
        .and_then(|r| r.iter().find(|s| s["name"] == "raw"))
        .unwrap_or_else(|| panic!("{json}"));
    assert!(raw["port"].is_null() && raw["url"].is_null(), "{json}");
    let table = host.ok(repo, &["services", name]);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("echo ") && l.contains(&declared.to_string())),
        "{table}"
    );

    // logs of one unit: the box's escape is shown, not sent to the terminal.
    let log = host.ok(repo, &["logs", name, "echo"]);
    assert!(
        log.contains(&format!("echo O hello \\x1b[31mred from {declared}")),
        "{log}"
    );
    assert!(!log.contains('\u{1b}'), "{log:?}");
    assert!(!log.contains("from {undeclared}"), "{log}");
    // Every unit, merged; --since and --json.
    let all = host.ok(repo, &["logs", name, "--since", "1h", "--json"]);
    let units: Vec<String> = all
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("a JSON line")["unit"].to_string()
        })
        .collect();
    assert!(
        units.iter().any(|u| u == "\"echo\"") && units.iter().any(|u| u == "\"raw\""),
        "{all}"
    );
    let missing = host.run(repo, &["logs", name, "nope"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no unit named `nope`"),
        "{missing:?}"
    );

    // url --open hands the printed address to $BROWSER.
    let opened = host.scratch().join(format!("opened-{provider}"));
    let browser = host.scratch().join("browser.sh");
    std::fs::write(&browser, "#!/bin/sh\nprintf '%s' \"$1\" > \"$OPENED\"\n").expect("script");
    std::fs::set_permissions(
        &browser,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let out = agentbox(host, repo, &["url", name, "--direct", "--open"])
        .env("BROWSER", &browser)
        .env("OPENED", &opened)
        .stdin(Stdio::null())
        .output_within_limit();
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(printed.starts_with("http"), "{printed}");
    assert_eq!(
        std::fs::read_to_string(&opened).expect("the browser ran"),
        printed
    );

    // port: a port no agentbox.yaml declares, several connections at once.
    let mut forward = agentbox(
        host,
        repo,
        &["port", name, &undeclared.to_string(), "--local", "0"],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("port");
    let mut out = BufReader::new(forward.stdout.take().expect("stdout"));
    let line = wait_for_line(&mut out, "Forwarding from 127.0.0.1:");
    let local: u16 = line
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let threads: Vec<_> = (0..4u8)
        .map(|i| {
            let big = big.clone();
            std::thread::spawn(move || {
                echo_through(local, format!("connection {i}\n").as_bytes());
                echo_through(local, &big);
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a connection through the forward");
    }
    sigint(&forward);
    let ended =
        finish_within(forward, "agentbox port", COMMAND_LIMIT).expect("the forward ends on Ctrl-C");
    assert!(ended.status.success(), "{ended:?}");
    assert!(
        String::from_utf8_lossy(&ended.stderr).contains("ended"),
        "{ended:?}"
    );

    // A port nothing listens on: the connection is closed and the reason reported.
    let mut refused = agentbox(
        host,
        repo,
        &["port", name, &closed.to_string(), "--local", "0"],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("port");
    let mut out = BufReader::new(refused.stdout.take().expect("stdout"));
    let line = wait_for_line(&mut out, "Forwarding from 127.0.0.1:");
    let local: u16 = line
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    let mut c = TcpStream::connect(("127.0.0.1", local)).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    assert!(rest.is_empty());
    sigint(&refused);
    let ended = finish_within(refused, "agentbox port", COMMAND_LIMIT).expect("ends");
    let err = String::from_utf8_lossy(&ended.stderr);
    assert!(
        err.contains(&format!(
            "nothing accepts connections on port {closed} in the box"
        )),
        "{err}"
    );

    // logs -f: follows, ends on Ctrl-C; another ends when the box stops.
    for how in ["ctrl-c", "stop"] {
        let mut follow = agentbox(host, repo, &["logs", name, "echo", "-f"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("logs -f");
        let mut out = BufReader::new(follow.stdout.take().expect("stdout"));
        wait_for_line(&mut out, "hello");
        if how == "ctrl-c" {
            sigint(&follow);
        } else {
            host.ok(repo, &["stop", name]);
        }
        let ended = finish_within(follow, "agentbox logs -f", COMMAND_LIMIT).expect("-f ends");
        assert!(ended.status.success(), "{how}: {ended:?}");
    }
}

/// `output_within` with the usual limit, for a command built here.
trait WithinLimit {
    fn output_within_limit(&mut self) -> std::process::Output;
}

impl WithinLimit for Command {
    fn output_within_limit(&mut self) -> std::process::Output {
        use agentbox_tests::run::TimedOutput;
        self.output_within(COMMAND_LIMIT).expect("run agentbox")
    }
}

#[test]
fn logs_services_url_open_and_port_on_a_local_box() {
    let host = Host::new();
    let repo = host.project("proj");
    let name = format!("svc-local-{}", std::process::id());
    scenario(
        &host,
        &repo,
        &name,
        "local",
        (free_port(), free_port(), free_port()),
    );
    let _ = host.run(&repo, &["destroy", &name, "-y", "--force"]);
}

#[test]
fn logs_services_url_open_and_port_on_a_docker_box() {
    let host = Host::new();
    let repo = host.project("proj");
    host.prepare(&repo);
    let name = format!("svc-docker-{}", std::process::id());
    scenario(&host, &repo, &name, "docker", (7001, 7002, 7003));
}

const KEY: &str = "dtn_svc0123456789abcdef";

impl Runner for DaytonaHost {
    fn command(&self, cwd: &Path, args: &[&str]) -> Command {
        DaytonaHost::command(self, cwd, args)
    }
    fn scratch(&self) -> &Path {
        self.dir.path()
    }
}

#[test]
fn logs_services_url_open_and_port_on_a_daytona_box() {
    let host = DaytonaHost::start(KEY, &[("DAYTONA_FAKE_TRANSITION_MS", "100")]);
    let repo = git_repo(&host.dir.path().join("proj"), "hello\n");
    host.login(&repo);
    host.prepare(&repo);
    let name = format!("svc-daytona-{}", std::process::id());
    scenario(&host, &repo, &name, "daytona", (7001, 7002, 7003));
}
