//! `agentbox dashboard` driven headless (issue 22 item 4): the dashboard runs in a
//! pseudo-terminal, its screen is rendered with vt100, and keys are typed into it. Two
//! real local boxes: their rows (provider, state, service with its port) appear; Enter
//! attaches to a box's session and the dashboard comes back after the detach; a box
//! stopped from outside shows as stopped within seconds, and `S` starts it again; a request
//! the box makes under `policy.open: ask` shows as waiting, `y` approves it and the box's
//! `agentbox-ctl open` sees it granted; `q` leaves the main screen back with the cursor
//! shown. Then the other keys: `o` gives the browser (`$BROWSER`, a script that records)
//! the address `agentbox url` prints, of the WebProxy or of the service picked; `s` says
//! why a local box has no screen, and on a docker box opens its screen's address; `S` asks
//! before it stops a box (seen on the screen and in `list --json`); and `y` approves a
//! docker box's request.
//!
//! The docker test needs a running Docker engine and the offline base image (`scripts/test`);
//! it makes its box from the image with the browser, which `prepare` builds once per
//! machine (`browser_screen`, which runs before it, builds it too).

#[allow(dead_code)]
mod docker_common;

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentbox_tests::bin_path;
use agentbox_tests::run::{finish_within, limit_for, TimedOutput, COMMAND_LIMIT};
use portable_pty::{CommandBuilder, PtySize};

/// How long the screen may take to show a change: the local probe runs every 2 s.
const SHOWS_WITHIN: Duration = Duration::from_secs(15);

const ROWS: u16 = 30;
const COLS: u16 = 150;

/// A scratch AGENTBOX_HOME (its docker containers and volumes removed with it), a
/// repository, a browser (`$BROWSER`: the host's one choice for the box's requests and for
/// `o` and `s`) that records what it was given, and an HTTPS proxy port of its own.
struct Host {
    docker: docker_common::Host,
    proxy_port: u16,
}

impl Host {
    fn new() -> Self {
        let host = Self {
            docker: docker_common::Host::new(),
            proxy_port: free_port(),
        };
        std::fs::write(
            host.path("browser"),
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$1\" >> {}\n",
                host.path("browsed").display()
            ),
        )
        .expect("write a recording browser");
        std::fs::set_permissions(
            host.path("browser"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        host
    }

    fn path(&self, p: &str) -> PathBuf {
        self.docker.dir.path().join(p)
    }

    /// What the recording script `record` (`browsed`) was given, one per line.
    fn recorded(&self, record: &str) -> String {
        std::fs::read_to_string(self.path(record)).unwrap_or_default()
    }

    /// The environment of every `agentbox` of the test (and so of its bridge daemon).
    fn env(&self) -> Vec<(&'static str, String)> {
        let path = |p: &str| self.path(p).display().to_string();
        vec![
            ("AGENTBOX_HOME", self.docker.home().display().to_string()),
            ("BROWSER", path("browser")),
            ("AGENTBOX_PROXY_PORT", self.proxy_port.to_string()),
        ]
    }

    fn command(&self, cwd: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(bin_path("agentbox"));
        c.args(args).current_dir(cwd).envs(self.env());
        c
    }

    fn ok(&self, cwd: &Path, args: &[&str]) -> String {
        let out = self
            .command(cwd, args)
            .stdin(Stdio::null())
            .output_within(limit_for(args))
            .expect("run agentbox");
        agentbox_tests::succeeded(args, &out)
    }

    /// The state `agentbox list --json` gives box `name`.
    fn listed_state(&self, cwd: &Path, name: &str) -> String {
        let list: serde_json::Value =
            serde_json::from_str(&self.ok(cwd, &["list", "--json"])).expect("list --json");
        list.as_array()
            .into_iter()
            .flatten()
            .find(|b| b["name"] == name)
            .and_then(|b| b["state"].as_str())
            .unwrap_or_else(|| panic!("box {name} is not listed: {list}"))
            .to_string()
    }

    /// A repository (no agentbox.yaml yet).
    fn repo(&self) -> PathBuf {
        agentbox_tests::daytona_host::git_repo(&self.path("proj"), "dashboard\n")
    }
}

/// A port free on this machine now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Gives `repo` an agentbox.yaml (untracked: the seed takes it) that runs service `web`
/// listening on `port`.
fn add_web_service(repo: &Path, port: u16) {
    let listen = r#"my $s = IO::Socket::INET->new(LocalAddr=>"127.0.0.1",LocalPort=>$ARGV[0],Listen=>1,ReuseAddr=>1) or die "listen: $!"; sleep 100000"#;
    let yaml = format!(
        "services:\n  web:\n    command: [perl, -MIO::Socket::INET, -e, '{listen}', '{port}']\n    ready_when: {{port: {port}}}\n    expose: {{port: {port}}}\n"
    );
    std::fs::write(repo.join("agentbox.yaml"), yaml).expect("yaml");
}

impl Drop for Host {
    /// Its boxes destroyed and its proxy stopped; then `docker` stops the bridge and
    /// removes what is left of its containers.
    fn drop(&mut self) {
        let cwd = self.docker.dir.path().to_path_buf();
        let names = self
            .command(&cwd, &["list", "--quiet"])
            .timed_output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for name in names.split_whitespace() {
            let _ = self
                .command(&cwd, &["destroy", "-y", "--force", name])
                .timed_output();
        }
        let _ = self.command(&cwd, &["proxy", "stop"]).timed_output();
    }
}

/// The dashboard in a pseudo-terminal, its screen kept by a vt100 parser.
struct Dashboard {
    child: Box<dyn portable_pty::Child + Send + Sync>,
    writer: Box<dyn Write + Send>,
    parser: Arc<Mutex<vt100::Parser>>,
    /// Closed when the reader saw the end of the terminal's output.
    ended: std::sync::mpsc::Receiver<()>,
    _master: Box<dyn portable_pty::MasterPty + Send>,
}

impl Dashboard {
    fn start(host: &Host, cwd: &Path) -> Self {
        let pty = portable_pty::native_pty_system()
            .openpty(PtySize {
                rows: ROWS,
                cols: COLS,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("openpty");
        let mut command = CommandBuilder::new(bin_path("agentbox"));
        command.arg("dashboard");
        command.cwd(cwd);
        for (k, v) in host.env() {
            command.env(k, v);
        }
        command.env("TERM", "xterm-256color");
        let child = pty.slave.spawn_command(command).expect("spawn dashboard");
        drop(pty.slave);
        let mut reader = pty.master.try_clone_reader().expect("reader");
        let writer = pty.master.take_writer().expect("writer");
        let size = |n| std::num::NonZeroU16::new(n).expect("a terminal size");
        let parser = Arc::new(Mutex::new(vt100::Parser::new(size(ROWS), size(COLS), 0)));
        let p = parser.clone();
        let (end, ended) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            let _end = end;
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                p.lock().expect("parser").process(&buf[..n]);
            }
        });
        Self {
            child,
            writer,
            parser,
            ended,
            _master: pty.master,
        }
    }

    fn screen(&self) -> String {
        self.parser.lock().expect("parser").screen().contents()
    }

    /// The screen's line that holds `needle`.
    fn row(&self, needle: &str) -> Option<String> {
        self.screen()
            .lines()
            .find(|l| l.contains(needle))
            .map(str::to_string)
    }

    /// Waits until `check` holds of the screen; how long that took.
    fn wait(&self, what: &str, check: impl Fn(&Self) -> bool) -> Duration {
        let started = Instant::now();
        while !check(self) {
            assert!(
                started.elapsed() < SHOWS_WITHIN,
                "the dashboard never showed {what}:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        started.elapsed()
    }

    /// Waits until the row of box `name` holds every one of `cells`.
    fn wait_row(&self, name: &str, cells: &[&str]) -> Duration {
        self.wait(&format!("{name} with {cells:?}"), |d| {
            d.row(name)
                .is_some_and(|r| cells.iter().all(|c| r.contains(c)))
        })
    }

    fn key(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("type");
        self.writer.flush().expect("flush");
    }

    /// Waits for the dashboard to exit; whether it succeeded.
    fn wait_exit(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.success();
            }
            assert!(Instant::now() < deadline, "q did not end the dashboard");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// `agentbox exec NAME -- agentbox-ctl open URL --wait 60000`: the box asks the host to
/// open `url`, and waits for the answer.
fn request_open(host: &Host, cwd: &Path, name: &str, url: &str) -> std::process::Child {
    host.command(
        cwd,
        &[
            "exec",
            name,
            "--",
            "agentbox-ctl",
            "open",
            url,
            "--wait",
            "60000",
        ],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0)
    .spawn()
    .expect("spawn the request")
}

/// Waits for `requester` ([`request_open`]) to end: the box's side must have seen its
/// request for `url` granted.
fn granted(requester: std::process::Child, url: &str) {
    let out = finish_within(requester, "agentbox-ctl open", COMMAND_LIMIT).expect("request");
    assert!(
        out.status.success(),
        "the approved request failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("opened {url}\n")
    );
}

#[test]
fn the_dashboard_shows_boxes_follows_their_state_approves_and_quits_cleanly() {
    let host = Host::new();
    let port = free_port();
    let repo = host.repo();
    host.ok(&repo, &["config", "set", "--global", "policy.open", "ask"]);
    // dash-b (the first row) runs no service but a session; dash-a runs `web` (local boxes share this
    // machine's ports, so only one of them can).
    host.ok(
        &repo,
        &[
            "run",
            "-d",
            "--name",
            "dash-b",
            "--",
            "sh",
            "-c",
            "echo hello from dash-b; exec sleep 100000",
        ],
    );
    add_web_service(&repo, port);
    host.ok(&repo, &["create", "--name", "dash-a"]);

    let mut dash = Dashboard::start(&host, &repo);
    let shown = dash.wait_row(
        "dash-a",
        &["local", "running", &format!("web:{port} ready")],
    );
    dash.wait_row("dash-b", &["local", "running"]);
    eprintln!("rows shown after {shown:?}");

    // Enter attaches to dash-b's session on the real terminal; Ctrl-a d comes back.
    dash.key(b"\r");
    dash.wait("dash-b's session", |d| {
        d.screen().contains("hello from dash-b")
    });
    dash.key(b"\x01d");
    dash.wait("the dashboard again after the detach", |d| {
        d.screen().contains("detached from box `dash-b`") && d.row("dash-a").is_some()
    });

    // Stopped from outside: the row follows within seconds.
    host.ok(&repo, &["stop", "dash-b"]);
    let stopped = dash.wait_row("dash-b", &["stopped"]);
    eprintln!("stop seen after {stopped:?}");

    // `S` on a stopped box starts it (no question asked).
    dash.wait("dash-b selected", |d| d.screen().contains("─ dash-b"));
    dash.key(b"S");
    let started = dash.wait_row("dash-b", &["running"]);
    eprintln!("start seen after {started:?}");

    // The box asks to open a URL; the host's policy asks the user.
    dash.key(b"j");
    let requester = request_open(&host, &repo, "dash-a", "https://example.com/dash");
    let waiting = dash.wait("the waiting request of dash-a", |d| {
        d.screen().contains("─ dash-a")
            && d.screen()
                .contains("waiting (open): open https://example.com/dash")
            && d.row("dash-a").is_some_and(|r| r.trim_end().ends_with('1'))
    });
    eprintln!("approval shown after {waiting:?}");
    dash.key(b"y");
    granted(requester, "https://example.com/dash");
    assert_eq!(host.recorded("browsed"), "https://example.com/dash\n");
    dash.wait("the approval gone", |d| {
        d.screen().contains("approved")
            && d.row("dash-a").is_some_and(|r| r.trim_end().ends_with('-'))
    });

    // `q`: the dashboard ends and the terminal is as it was.
    dash.key(b"q");
    assert!(dash.wait_exit(), "the dashboard failed:\n{}", dash.screen());
    // Everything it wrote is read.
    assert!(
        dash.ended.recv_timeout(Duration::from_secs(10)).is_err(),
        "the terminal's output never ended"
    );
    let parser = dash.parser.lock().expect("parser");
    assert!(
        !parser.screen().alternate_screen(),
        "the alternate screen was left on"
    );
    assert!(!parser.screen().hide_cursor(), "the cursor was left hidden");
}

/// `o` opens the box's WebProxy, or the service picked, in the browser: the address
/// `agentbox url` gives. `s` on a local box says it has no screen. `S` asks first: any
/// other key keeps the box running, `y` stops it — on the screen and in `list --json`.
#[test]
fn o_opens_the_box_or_a_service_s_says_a_local_box_has_no_screen_and_shift_s_stops_after_asking() {
    let host = Host::new();
    let port = free_port();
    let repo = host.repo();
    add_web_service(&repo, port);
    host.ok(&repo, &["create", "--name", "dash-o"]);

    let mut dash = Dashboard::start(&host, &repo);
    dash.wait_row(
        "dash-o",
        &["local", "running", &format!("web:{port} ready")],
    );

    // `o` on a box with a service asks which; Enter takes the default, the WebProxy.
    let started = Instant::now();
    dash.key(b"o");
    dash.wait("the choice of what to open", |d| {
        d.screen().contains("> the box's WebProxy (default)")
            && d.screen().contains(&format!("web (port {port})"))
    });
    dash.key(b"\r");
    dash.wait("the WebProxy opened", |d| {
        d.screen().contains("open: opened https://")
    });
    let webproxy = host.ok(&repo, &["url", "--", "dash-o"]);
    assert_eq!(
        host.recorded("browsed"),
        webproxy,
        "what the browser was given"
    );
    // `j` picks the service.
    dash.key(b"o");
    dash.wait("the choice again", |d| {
        d.screen().contains("> the box's WebProxy")
    });
    dash.key(b"j");
    dash.wait("the service picked", |d| {
        d.screen().contains(&format!("> web (port {port})"))
    });
    dash.key(b"\r");
    let service = host.ok(&repo, &["url", "--port", &port.to_string(), "--", "dash-o"]);
    assert_ne!(service, webproxy);
    dash.wait("the service opened", |d| {
        d.screen()
            .contains(&format!("open: opened {}", service.trim()))
    });
    assert_eq!(host.recorded("browsed"), format!("{webproxy}{service}"));
    eprintln!("o: both addresses opened after {:?}", started.elapsed());

    // `s`: a local box has no screen of its own; the message says so.
    dash.key(b"s");
    dash.wait("why there is no screen", |d| {
        d.screen().contains("screen: box `dash-o` is a local box")
    });

    // `S` asks; `n` (any key but y/Enter) keeps the box.
    dash.key(b"S");
    dash.wait("the stop question", |d| {
        d.screen().contains("Stop box `dash-o`? y stops it")
    });
    dash.key(b"n");
    dash.wait("the box kept", |d| {
        d.screen().contains("box `dash-o` left running")
    });
    assert_eq!(host.listed_state(&repo, "dash-o"), "running");
    // `S` `y` stops it.
    let started = Instant::now();
    dash.key(b"S");
    dash.wait("the stop question again", |d| {
        d.screen().contains("Stop box `dash-o`? y stops it")
    });
    dash.key(b"y");
    dash.wait_row("dash-o", &["stopped"]);
    dash.wait("the stop's outcome", |d| {
        d.screen().contains("stop dash-o:")
    });
    eprintln!("S y: stopped after {:?}", started.elapsed());
    assert_eq!(host.listed_state(&repo, "dash-o"), "stopped");
    assert!(
        !dash.screen().contains("stop dash-o failed"),
        "{}",
        dash.screen()
    );
}

/// On a docker box (of the image with the browser, which `browser_screen` builds once per
/// machine): a request the box makes under `policy.open: ask` is approved with `y` and the
/// box's `agentbox-ctl open` sees it granted; `s` gives `$BROWSER` the address of the box's
/// screen that `agentbox screen` prints.
#[test]
fn y_approves_a_docker_box_request_and_s_opens_its_screen() {
    let host = Host::new();
    let repo = host.repo();
    let base = agentbox_tests::docker_base_image();
    host.ok(
        &repo,
        &[
            "prepare",
            "--provider",
            "docker",
            "--base-image",
            &base,
            "--agents",
            "browser",
        ],
    );
    host.ok(&repo, &["config", "set", "--global", "policy.open", "ask"]);
    let started = Instant::now();
    host.ok(
        &repo,
        &["create", "--provider", "docker", "--name", "dash-d"],
    );
    eprintln!("docker box made in {:?}", started.elapsed());

    let mut dash = Dashboard::start(&host, &repo);
    dash.wait_row("dash-d", &["docker", "running"]);
    let requester = request_open(&host, &repo, "dash-d", "https://example.com/docker");
    let waiting = dash.wait("the waiting request of dash-d", |d| {
        d.screen()
            .contains("waiting (open): open https://example.com/docker")
            && d.row("dash-d").is_some_and(|r| r.trim_end().ends_with('1'))
    });
    eprintln!("approval shown after {waiting:?}");
    dash.key(b"y");
    granted(requester, "https://example.com/docker");
    assert_eq!(host.recorded("browsed"), "https://example.com/docker\n");
    dash.wait("the approval gone", |d| {
        d.screen().contains("approved")
            && d.row("dash-d").is_some_and(|r| r.trim_end().ends_with('-'))
    });

    let started = Instant::now();
    dash.key(b"s");
    dash.wait("the screen opened", |d| {
        d.screen()
            .contains("opened the screen of box `dash-d` with ")
    });
    eprintln!("s: the screen opened after {:?}", started.elapsed());
    let address = host.ok(&repo, &["screen", "--", "dash-d"]);
    assert!(address.contains("/vnc.html?"), "{address}");
    assert_eq!(
        host.recorded("browsed"),
        format!("https://example.com/docker\n{address}"),
        "what the browser was given (the box's page, then the screen)"
    );
}

#[test]
fn without_a_terminal_the_dashboard_says_what_to_use_instead() {
    let host = Host::new();
    let out = host
        .command(host.docker.dir.path(), &["dashboard"])
        .timed_output()
        .expect("run agentbox");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the dashboard needs a terminal"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
