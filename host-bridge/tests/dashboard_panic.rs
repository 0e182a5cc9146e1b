//! The dashboard's terminal comes back when the dashboard panics: the panic's message is
//! readable on the user's main screen afterwards, the alternate screen is left, the cursor
//! shown, the terminal's modes are those it had before (raw mode off), and the program
//! ends — also when the panic is on another thread than the screen's (the collector's),
//! while the screen's thread goes on waiting for keys as the dashboard's loop does. While
//! the terminal is lent (to attach), a panic leaves it to its borrower, and the program ends
//! with the panic's message when the borrower gives the terminal back.
//!
//! This binary is its own subject (`harness = false`): run with a scene's name, it
//! takes its terminal with the dashboard's [`Screen::enter`] — the same function, and so
//! the same panic hook, `agentbox dashboard` uses — draws, waits for a key and panics.
//! Run without arguments, it starts itself that way in a pseudo-terminal, renders what it
//! writes with vt100 and checks the terminal after the panic. (The product has no way to
//! be made to panic on purpose, and should not.)

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentbox::dashboard::terminal::Screen;
use nix::fcntl::OFlag;
use portable_pty::{CommandBuilder, PtySize};
use ratatui::crossterm::event;
use ratatui::widgets::Paragraph;
use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions, Termios};

/// The child's scenes: the panic on the screen's thread, or on another one.
const SCENES: [&str; 2] = ["panic-on-the-screens-thread", "panic-on-another-thread"];

/// The scene of a panic on another thread while the terminal is lent (to attach).
const LENT: &str = "panic-while-lent";

/// What the borrower draws on its own alternate screen.
const BORROWED: &str = "the borrower's screen";

/// What the child draws on its alternate screen.
const DRAWN: &str = "the dashboard is drawn";

/// The child's panic message.
const MESSAGE: &str = "the dashboard panicked on purpose";

/// How long each step may take.
const LIMIT: Duration = Duration::from_secs(10);

const ROWS: u16 = 24;
const COLS: u16 = 100;

fn main() {
    // Other arguments (a filter, `--nocapture`, which `cargo test` passes to every test
    // binary) do not make it a child.
    let scene = std::env::args()
        .nth(1)
        .filter(|a| SCENES.contains(&a.as_str()) || a == LENT);
    if let Some(scene) = scene {
        act(&scene);
        return;
    }
    for scene in SCENES {
        let started = Instant::now();
        a_panic_gives_the_terminal_back(scene);
        println!("test {scene} ... ok ({:?})", started.elapsed());
    }
    let started = Instant::now();
    a_panic_leaves_a_lent_terminal_to_its_borrower();
    println!("test {LENT} ... ok ({:?})", started.elapsed());
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
    if scene == LENT {
        // As `agentbox dashboard` ends on the error: the screen dropped, the error printed.
        if let Err(e) = screen.lend(borrow) {
            drop(screen);
            eprintln!("agentbox: {e}");
            std::process::exit(1);
        }
        return;
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

/// The borrower of the terminal, as attach is: its own alternate screen and raw mode (set
/// as another program sets them, not through the dashboard's crossterm); meanwhile another
/// thread of the dashboard panics. A key ends it.
fn borrow() {
    let stdin = std::io::stdin();
    let cooked = tcgetattr(&stdin).expect("tcgetattr");
    let mut raw = cooked.clone();
    raw.make_raw();
    tcsetattr(&stdin, OptionalActions::Now, &raw).expect("raw mode");
    print!("\x1b[?1049h{BORROWED}\r\n");
    std::io::stdout().flush().expect("flush");
    let _ = std::thread::spawn(|| boom()).join();
    let mut key = [0u8; 1];
    std::io::stdin().read_exact(&mut key).expect("a key");
    tcsetattr(&stdin, OptionalActions::Now, &cooked).expect("cooked mode");
    print!("\x1b[?1049l");
    std::io::stdout().flush().expect("flush");
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

/// This binary in a scene, in a pseudo-terminal whose output a vt100 parser renders.
struct InTerminal {
    scene: &'static str,
    child: Box<dyn portable_pty::Child + Send + Sync>,
    writer: Box<dyn Write + Send>,
    parser: Arc<Mutex<vt100::Parser>>,
    /// Closed when the reader saw the end of the terminal's output.
    ended: std::sync::mpsc::Receiver<()>,
    /// The terminal's path, to read its modes.
    tty: PathBuf,
    /// Its modes before the child.
    before: Termios,
    _master: Box<dyn portable_pty::MasterPty + Send>,
}

impl InTerminal {
    fn start(scene: &'static str) -> Self {
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
        let child = pty.slave.spawn_command(command).expect("spawn the child");
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
            scene,
            child,
            writer,
            parser,
            ended,
            tty,
            before,
            _master: pty.master,
        }
    }

    /// The terminal's modes now.
    fn modes(&self) -> Termios {
        modes(&self.tty)
    }

    /// Waits until `check` holds of the screen.
    fn wait(&self, what: &str, check: impl Fn(&vt100::Screen) -> bool) {
        let started = Instant::now();
        loop {
            {
                let parser = self.parser.lock().expect("parser");
                if check(parser.screen()) {
                    return;
                }
                assert!(
                    started.elapsed() < LIMIT,
                    "{}: never saw {what}:\n{}",
                    self.scene,
                    parser.screen().contents()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Types a key.
    fn key(&mut self) {
        self.writer.write_all(b"x").expect("type");
        self.writer.flush().expect("flush");
    }

    /// Waits for the child to end and for everything it wrote to be read; its exit code.
    fn exit(&mut self) -> u32 {
        let deadline = Instant::now() + LIMIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "{}: the program went on after the panic; its terminal:\n{}",
                    self.scene,
                    self.parser.lock().expect("parser").screen().contents()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            self.ended.recv_timeout(LIMIT).is_err(),
            "{}: the terminal's output never ended",
            self.scene
        );
        status.exit_code()
    }

    /// Checks that the terminal is as the child found it: main screen, cursor shown,
    /// the same modes.
    fn given_back(&self) {
        let scene = self.scene;
        {
            let parser = self.parser.lock().expect("parser");
            let s = parser.screen();
            assert!(
                !s.alternate_screen(),
                "{scene}: the alternate screen was left on"
            );
            assert!(!s.hide_cursor(), "{scene}: the cursor was left hidden");
        }
        let after = self.modes();
        assert_eq!(
            (after.input_modes, after.output_modes, after.local_modes),
            (
                self.before.input_modes,
                self.before.output_modes,
                self.before.local_modes
            ),
            "{scene}: the terminal's modes were not given back"
        );
    }
}

impl Drop for InTerminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// The dashboard's screen, drawn, in raw mode.
fn drawn(t: &InTerminal) {
    t.wait("the dashboard drawn", |s| {
        s.alternate_screen() && s.hide_cursor() && s.contents().contains(DRAWN)
    });
    let during = t.modes();
    assert!(
        !during.local_modes.contains(LocalModes::ICANON),
        "{}: the dashboard did not take the terminal raw: {during:?}",
        t.scene
    );
}

/// Runs the child in `scene` in a pseudo-terminal and checks the terminal after its panic:
/// given back, the message on the main screen, the program ended.
fn a_panic_gives_the_terminal_back(scene: &'static str) {
    let mut t = InTerminal::start(scene);
    drawn(&t);
    t.key();
    assert_eq!(t.exit(), 101, "{scene}: the child did not panic");
    t.given_back();
    let contents = t.parser.lock().expect("parser").screen().contents();
    assert!(
        contents.contains(MESSAGE),
        "{scene}: the panic's message is not on the main screen (printed before the terminal was given back?):\n{contents}"
    );
}

/// A panic while attach has the terminal leaves it to attach: its alternate screen and raw
/// mode stay; when attach gives the terminal back, the dashboard ends with the panic's
/// message rather than go on without the part that died.
fn a_panic_leaves_a_lent_terminal_to_its_borrower() {
    let mut t = InTerminal::start(LENT);
    drawn(&t);
    t.key();
    t.wait("the panic on the borrower's screen", |s| {
        s.contents().contains(BORROWED) && s.contents().contains(MESSAGE)
    });
    {
        let parser = t.parser.lock().expect("parser");
        assert!(
            parser.screen().alternate_screen(),
            "the panic took the borrower's alternate screen away:\n{}",
            parser.screen().contents()
        );
    }
    assert!(
        !t.modes().local_modes.contains(LocalModes::ICANON),
        "the panic took the borrower's raw mode away"
    );
    t.key();
    assert_eq!(
        t.exit(),
        1,
        "the dashboard did not end with an error after the borrower"
    );
    t.given_back();
    let contents = t.parser.lock().expect("parser").screen().contents();
    assert!(
        contents.contains("a part of it failed while another program had the terminal")
            && contents.contains(MESSAGE),
        "the panic's message is not on the main screen:\n{contents}"
    );
}
