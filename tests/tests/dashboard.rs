//! `agentbox dashboard` driven headless (issue 22 item 4): the dashboard runs in a
//! pseudo-terminal, its screen is rendered with vt100, and keys are typed into it. Two
//! real local boxes: their rows (provider, state, service with its port) appear; Enter
//! attaches to a box's session and the dashboard comes back after the detach; a box
//! stopped from outside shows as stopped within seconds, and `S` starts it again; a request
//! the box makes under `policy.open: ask` shows as waiting, `y` approves it and the box's
//! `agentbox-ctl open` sees it granted; `q` leaves the main screen back with the cursor
//! shown.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentbox_tests::bin_path;
use agentbox_tests::run::{finish_within, TimedOutput, COMMAND_LIMIT};
use portable_pty::{CommandBuilder, PtySize};

/// How long the screen may take to show a change: the local probe runs every 2 s.
const SHOWS_WITHIN: Duration = Duration::from_secs(15);

const ROWS: u16 = 30;
const COLS: u16 = 150;

/// A scratch AGENTBOX_HOME, a repository and an opener that records what it was given.
struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// The environment of every `agentbox` of the test (and so of its bridge daemon).
    fn env(&self) -> Vec<(&'static str, PathBuf)> {
        vec![
            ("AGENTBOX_HOME", self.path("home")),
            ("AGENTBOX_OPENER", self.path("opener")),
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
            .timed_output()
            .expect("run agentbox");
        agentbox_tests::succeeded(args, &out)
    }

    /// A repository (no agentbox.yaml yet).
    fn repo(&self) -> PathBuf {
        agentbox_tests::daytona_host::git_repo(&self.path("proj"), "dashboard\n")
    }
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
    fn drop(&mut self) {
        let cwd = self.dir.path().to_path_buf();
        for name in ["dash-a", "dash-b"] {
            let _ = self
                .command(&cwd, &["destroy", "-y", "--force", name])
                .timed_output();
        }
        let _ = self.command(&cwd, &["bridge", "stop"]).timed_output();
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

#[test]
fn the_dashboard_shows_boxes_follows_their_state_approves_and_quits_cleanly() {
    let host = Host::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let repo = host.repo();
    std::fs::write(
        host.path("opener"),
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$1\" >> {}\n",
            host.path("opened").display()
        ),
    )
    .expect("opener");
    std::fs::set_permissions(
        host.path("opener"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
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
    let mut requester = host.command(
        &repo,
        &[
            "exec",
            "dash-a",
            "--",
            "agentbox-ctl",
            "open",
            "https://example.com/dash",
            "--wait",
            "60000",
        ],
    );
    let requester = requester
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn the request");
    let waiting = dash.wait("the waiting request of dash-a", |d| {
        d.screen().contains("─ dash-a")
            && d.screen()
                .contains("waiting (open): open https://example.com/dash")
            && d.row("dash-a").is_some_and(|r| r.trim_end().ends_with('1'))
    });
    eprintln!("approval shown after {waiting:?}");
    dash.key(b"y");
    let out = finish_within(requester, "agentbox-ctl open", COMMAND_LIMIT).expect("request");
    assert!(
        out.status.success(),
        "the approved request failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "opened https://example.com/dash\n"
    );
    assert_eq!(
        std::fs::read_to_string(host.path("opened")).expect("the opener ran"),
        "https://example.com/dash\n"
    );
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

#[test]
fn without_a_terminal_the_dashboard_says_what_to_use_instead() {
    let host = Host::new();
    let out = host
        .command(host.dir.path(), &["dashboard"])
        .timed_output()
        .expect("run agentbox");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the dashboard needs a terminal"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
