//! `agentbox attach` and `agentbox shell` driven through a real PTY on the client side,
//! against a local box (real ctl daemon, relay, tmux): typing, resize, read-only viewers,
//! detach and re-attach, and the session's end ending the client.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Host, AGENTBOX};
use portable_pty::{CommandBuilder, PtySize};

/// `agentbox …` running in a PTY, its output rendered by a terminal emulator.
struct Client {
    child: Box<dyn portable_pty::Child + Send + Sync>,
    master: Box<dyn portable_pty::MasterPty + Send>,
    writer: Box<dyn Write + Send>,
    screen: Arc<Mutex<vt100::Parser>>,
    raw: Arc<Mutex<Vec<u8>>>,
    /// Says when the reader has taken everything the terminal had (end of file).
    drained: std::sync::mpsc::Receiver<()>,
}

impl Client {
    fn start(host: &Host, cwd: &Path, args: &[&str], cols: u16, rows: u16) -> Self {
        Self::start_program(host, cwd, AGENTBOX, args, cols, rows)
    }

    fn start_program(
        host: &Host,
        cwd: &Path,
        program: &str,
        args: &[&str],
        cols: u16,
        rows: u16,
    ) -> Self {
        let pty = portable_pty::native_pty_system()
            .openpty(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("openpty");
        let mut command = CommandBuilder::new(program);
        command.args(args);
        command.cwd(cwd);
        command.env("AGENTBOX_HOME", host.home());
        command.env("TERM", "xterm-256color");
        let child = pty.slave.spawn_command(command).expect("spawn agentbox");
        drop(pty.slave);
        let mut reader = pty.master.try_clone_reader().expect("reader");
        let writer = pty.master.take_writer().expect("writer");
        let screen = Arc::new(Mutex::new(vt100::Parser::new(nz(rows), nz(cols), 0)));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let (s, r) = (screen.clone(), raw.clone());
        let (drained_tx, drained) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                s.lock().expect("screen").process(&buf[..n]);
                r.lock().expect("raw").extend_from_slice(&buf[..n]);
            }
            let _ = drained_tx.send(());
        });
        Self {
            child,
            master: pty.master,
            writer,
            screen,
            raw,
            drained,
        }
    }

    fn contents(&self) -> String {
        self.screen.lock().expect("screen").screen().contents()
    }

    fn raw_text(&self) -> String {
        String::from_utf8_lossy(&self.raw.lock().expect("raw")).into_owned()
    }

    fn type_keys(&mut self, keys: &str) {
        self.writer.write_all(keys.as_bytes()).expect("type");
        self.writer.flush().expect("flush");
    }

    /// Waits until the screen shows `text`.
    /// Whether the screen shows `text` within `limit`.
    fn shows(&self, text: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.contents().contains(text) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn wait_for(&self, text: &str) {
        if self.shows(text, Duration::from_secs(20)) {
            return;
        }
        panic!(
            "the screen never showed {text:?}:\n{}\n--- raw:\n{}",
            self.contents(),
            self.raw_text()
        );
    }

    fn resize(&self, cols: u16, rows: u16) {
        self.screen
            .lock()
            .expect("screen")
            .screen_mut()
            .set_size(nz(rows), nz(cols));
        self.master
            .resize(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("resize");
    }

    /// Waits for the client to exit; its exit status.
    fn wait_exit(&mut self) -> portable_pty::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // The client is gone: the reader meets the end of the terminal's output.
                let _ = self.drained.recv_timeout(Duration::from_secs(5));
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the client did not exit:\n{}",
                self.contents()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn nz(n: u16) -> std::num::NonZero<u16> {
    std::num::NonZero::new(n).expect("a size is never 0")
}

fn box_with_bash(host: &Host) -> (std::path::PathBuf, String) {
    let repo = host.repo("attached", "");
    let name = host
        .ok(&repo, &["run", "-d", "--", "bash", "--norc", "--noprofile"])
        .trim()
        .to_string();
    (repo, name)
}

#[test]
fn typing_resize_detach_and_reattach_through_the_relay() {
    let host = Host::new();
    let (repo, name) = box_with_bash(&host);
    let mut client = Client::start(&host, &repo, &["attach", &name], 100, 30);
    client.type_keys("echo $((6*7))x\r");
    client.wait_for("42x");
    client.type_keys("tput cols\r");
    client.wait_for("100\n");
    client.resize(123, 40);
    // The new size travels client → relay → tmux → bash: ask until bash sees it.
    let mut resized = false;
    for _ in 0..20 {
        client.type_keys("clear; tput cols; tput lines\r");
        if client.shows("123\n40", Duration::from_secs(1)) {
            resized = true;
            break;
        }
    }
    assert!(
        resized,
        "the resize never reached the session:\n{}",
        client.contents()
    );
    // Ctrl-a d detaches: the client ends with a line, the session goes on.
    client.type_keys("\x01d");
    let status = client.wait_exit();
    assert!(status.success(), "{status:?}: {}", client.raw_text());
    assert!(
        client.raw_text().contains("detached from session `agent`"),
        "{}",
        client.raw_text()
    );
    // Attaching again shows the same session: tmux redraws what was there.
    let mut again = Client::start(
        &host,
        &repo,
        &["attach", &name, "--session", "agent"],
        123,
        40,
    );
    again.wait_for("123");
    again.type_keys("echo second-$((1+1))\r");
    again.wait_for("second-2");
    again.type_keys("\x01d");
    assert!(again.wait_exit().success());
    // The local terminal was restored: the PTY is back in cooked mode is not visible from
    // here, but the client's own exit path ran (the line above was printed after it).
}

/// Keys reach tmux in batches (one message of the viewer's link), so `Ctrl-a d` often
/// arrives right behind other keys: it still detaches (tmux would take such a batch for a
/// paste and hand the `d` to the program; CI once hung on exactly that).
#[test]
fn a_detach_typed_right_behind_other_keys_still_detaches() {
    let host = Host::new();
    let (repo, name) = box_with_bash(&host);
    let mut client = Client::start(&host, &repo, &["attach", &name], 100, 30);
    client.type_keys("echo $((6*7))y\r");
    client.wait_for("42y");
    client.type_keys("abc\x01d");
    let status = client.wait_exit();
    assert!(status.success(), "{status:?}: {}", client.raw_text());
    assert!(
        client.raw_text().contains("detached from session `agent`"),
        "{}",
        client.raw_text()
    );
}

#[test]
fn read_only_viewers_watch_but_cannot_type() {
    let host = Host::new();
    let (repo, name) = box_with_bash(&host);
    let mut typist = Client::start(&host, &repo, &["attach", &name], 90, 25);
    let mut watcher = Client::start(&host, &repo, &["attach", &name, "--read-only"], 90, 25);
    typist.type_keys("echo from-$((2+3))-typist\r");
    watcher.wait_for("from-5-typist");
    watcher.type_keys("echo from-$((3+4))-watcher\r");
    typist.type_keys("echo after-$((1+8))\r");
    typist.wait_for("after-9");
    watcher.wait_for("after-9");
    assert!(
        !typist.contents().contains("from-7-watcher") && !typist.contents().contains("watcher"),
        "a read-only viewer typed:\n{}",
        typist.contents()
    );
    // A read-only viewer may still detach.
    watcher.type_keys("\x01d");
    assert!(watcher.wait_exit().success());
    typist.type_keys("\x01d");
    assert!(typist.wait_exit().success());
}

#[test]
fn a_shell_session_ending_ends_the_client() {
    let host = Host::new();
    let (repo, name) = box_with_bash(&host);
    let mut client = Client::start(&host, &repo, &["shell", &name, "--name", "sh1"], 80, 24);
    client.type_keys("echo in-shell-$((40+2))\r");
    client.wait_for("in-shell-42");
    client.type_keys("exit\r");
    let status = client.wait_exit();
    assert!(status.success(), "{status:?}");
    assert!(
        client.raw_text().contains("session `sh1` ended"),
        "{}",
        client.raw_text()
    );
}

#[test]
fn attach_to_a_missing_session_says_which_exist() {
    let host = Host::new();
    let (repo, name) = box_with_bash(&host);
    host.fails(
        &repo,
        &["attach", &name, "--session", "nope", "--no-tty"],
        "no session named `nope` (sessions: agent)",
    );
    host.ok(
        &repo,
        &[
            "exec",
            &name,
            "--",
            "agentbox-ctl",
            "session",
            "start",
            "two",
            "--",
            "sleep",
            "100",
        ],
    );
    host.fails(
        &repo,
        &["attach", &name, "--no-tty"],
        "name the session to attach to (sessions: agent, two)",
    );
    let out = host.run(&repo, &["attach", &name, "--reconnect-window", "2d"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the unit must be s, m or h"));
}

#[test]
fn the_relay_killed_mid_attach_is_restarted_and_the_client_attaches_again() {
    let host = Host::new();
    let (repo, name) = box_with_bash(&host);
    let relay_json = host.home().join(format!("boxes/{name}/run/relay.json"));
    let relay_pid = || -> Option<i32> {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&relay_json).ok()?).ok()?;
        i32::try_from(v["pid"].as_i64()?).ok()
    };
    let before = relay_pid().expect("relay.json");
    let mut client = Client::start(&host, &repo, &["attach", &name], 100, 30);
    client.type_keys("echo before-$((2*21))\r");
    client.wait_for("before-42");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(before),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the relay");
    // The supervisor starts a new relay on the same port; the client finds its term gone
    // and attaches again (tmux redraws the screen).
    assert!(common::eventually(
        || relay_pid().is_some_and(|p| p != before)
    ));
    // The notice may be wiped from the screen by tmux's redraw: look in the stream.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !client.raw_text().contains("attached again") {
        assert!(
            Instant::now() < deadline,
            "never attached again:\n{}",
            client.raw_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    client.type_keys("echo after-$((2*22))\r");
    client.wait_for("after-44");
    client.wait_for("before-42");
    client.type_keys("\x01d");
    assert!(client.wait_exit().success());
}

#[test]
fn the_local_terminal_is_back_in_cooked_mode_after_the_client_exits() {
    let host = Host::new();
    let (repo, name) = box_with_bash(&host);
    let script = format!("'{AGENTBOX}' attach {name}; echo exit=$?; stty -a");
    let mut client = Client::start_program(&host, &repo, "sh", &["-c", &script], 120, 40);
    client.type_keys("echo inside-$((3+4))\r");
    client.wait_for("inside-7");
    client.type_keys("\x01d");
    client.wait_for("exit=0");
    assert!(client.wait_exit().success());
    let settings = client.raw_text();
    let flags: Vec<&str> = settings.split_whitespace().collect();
    for flag in ["icanon", "echo", "isig", "icrnl", "opost"] {
        assert!(flags.contains(&flag), "`{flag}` not restored:\n{settings}");
    }
}
