//! The dashboard's terminal comes back when the dashboard panics: the panic's message is
//! readable on the user's main screen afterwards, the alternate screen is left, the cursor
//! shown, the terminal's modes are those it had before (raw mode off), and the program
//! ends — also when the panic is on another thread than the screen's (the collector's),
//! while the screen's thread goes on waiting for keys as the dashboard's loop does.
//!
//! This binary is its own subject (`harness = false`): run with one of [`SCENES`], it
//! takes its terminal with the dashboard's [`Screen::enter`] — the same function, and so
//! the same panic hook, `agentbox dashboard` uses — draws, waits for a key and panics.
//! Run without arguments, it starts itself that way in a pseudo-terminal, renders what it
//! writes with vt100 and checks the terminal after the panic. (The product has no way to
//! be made to panic on purpose, and should not.)

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentbox::dashboard::terminal::Screen;
use nix::fcntl::OFlag;
use portable_pty::{CommandBuilder, PtySize};
use ratatui::crossterm::event;
use ratatui::widgets::Paragraph;
use rustix::termios::{tcgetattr, LocalModes, Termios};

/// The child's scenes: the panic on the screen's thread, or on another one.
const SCENES: [&str; 2] = ["panic-on-the-screens-thread", "panic-on-another-thread"];

/// What the child draws on its alternate screen.
const DRAWN: &str = "the dashboard is drawn";

/// The child's panic message.
const MESSAGE: &str = "the dashboard panicked on purpose";

/// How long each step may take.
const LIMIT: Duration = Duration::from_secs(10);

const ROWS: u16 = 24;
const COLS: u16 = 100;

fn main() {
    if let Some(scene) = std::env::args().nth(1) {
        act(&scene);
    }
    for scene in SCENES {
        let started = Instant::now();
        a_panic_gives_the_terminal_back(scene);
        println!("test {scene} ... ok ({:?})", started.elapsed());
    }
}

/// The child: the dashboard's screen, drawn; a key; a panic in `scene`.
fn act(scene: &str) {
    let mut screen = Screen::enter().expect("take the terminal");
    screen
        .terminal
        .draw(|f| f.render_widget(Paragraph::new(DRAWN), f.area()))
        .expect("draw");
    // Raw mode: one byte arrives without a newline.
    let mut key = [0u8; 1];
    std::io::stdin().read_exact(&mut key).expect("a key");
    if scene == SCENES[0] {
        boom();
    }
    // The collector's thread panics; the screen's thread does what the dashboard's loop
    // does when no snapshot comes: it waits for keys, and draws after one.
    let _ = std::thread::spawn(|| boom()).join();
    loop {
        if event::poll(Duration::from_millis(200)).expect("poll") {
            let _ = event::read().expect("read");
            screen
                .terminal
                .draw(|f| f.render_widget(Paragraph::new(DRAWN), f.area()))
                .expect("draw");
        }
    }
}

/// The child's panic.
fn boom() -> ! {
    panic!("{MESSAGE}")
}

/// The terminal modes of the pseudo-terminal `tty` (its slave's path), read through a
/// descriptor of its own that is closed again at once (so the reader still sees the end of
/// the output when the child is gone).
fn modes(tty: &Path) -> Termios {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(OFlag::O_NOCTTY.bits())
        .open(tty)
        .expect("open the terminal");
    tcgetattr(&file).expect("tcgetattr")
}

/// Waits until `check` holds, failing with `what` and `shown` after [`LIMIT`].
fn wait(what: &str, shown: impl Fn() -> String, check: impl Fn() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < LIMIT, "never saw {what}:\n{}", shown());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the child in `scene` in a pseudo-terminal and checks the terminal after its panic.
fn a_panic_gives_the_terminal_back(scene: &str) {
    let pty = portable_pty::native_pty_system()
        .openpty(PtySize {
            rows: ROWS,
            cols: COLS,
            pixel_width: 0,
            pixel_height: 0,
        })
        .expect("openpty");
    let tty = pty.master.tty_name().expect("the terminal's name");
    let before = modes(&tty);
    assert!(
        before
            .local_modes
            .contains(LocalModes::ICANON | LocalModes::ECHO),
        "a new terminal is not in cooked mode: {before:?}"
    );

    let mut command = CommandBuilder::new(std::env::current_exe().expect("this test"));
    command.arg(scene);
    command.env("TERM", "xterm-256color");
    command.env("RUST_BACKTRACE", "0");
    let mut child = pty.slave.spawn_command(command).expect("spawn the child");
    drop(pty.slave);
    let mut reader = pty.master.try_clone_reader().expect("reader");
    let mut writer = pty.master.take_writer().expect("writer");
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
    let screen = || parser.lock().expect("parser").screen().contents();

    // The dashboard has the terminal: alternate screen, cursor hidden, raw mode.
    wait("the dashboard drawn", screen, || {
        let parser = parser.lock().expect("parser");
        let s = parser.screen();
        s.alternate_screen() && s.hide_cursor() && s.contents().contains(DRAWN)
    });
    let during = modes(&tty);
    assert!(
        !during.local_modes.contains(LocalModes::ICANON),
        "the dashboard did not take the terminal raw: {during:?}"
    );

    writer.write_all(b"x").expect("type");
    writer.flush().expect("flush");
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "{scene}: the program went on after the panic; its terminal:\n{}",
                screen()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.exit_code(), 101, "{scene}: the child did not panic");
    // Everything it wrote is read.
    assert!(
        ended.recv_timeout(LIMIT).is_err(),
        "the terminal's output never ended"
    );

    let parser = parser.lock().expect("parser");
    let s = parser.screen();
    assert!(
        !s.alternate_screen(),
        "{scene}: the alternate screen was left on"
    );
    assert!(!s.hide_cursor(), "{scene}: the cursor was left hidden");
    assert!(
        s.contents().contains(MESSAGE),
        "{scene}: the panic's message is not on the main screen (printed before the terminal was given back?):\n{}",
        s.contents()
    );
    let after = modes(&tty);
    assert_eq!(
        (after.input_modes, after.output_modes, after.local_modes),
        (before.input_modes, before.output_modes, before.local_modes),
        "{scene}: the terminal's modes were not given back"
    );
}
