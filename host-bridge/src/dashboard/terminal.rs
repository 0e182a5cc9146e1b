//! The terminal while the dashboard owns it: raw mode, the alternate screen, the cursor
//! hidden. [`Screen`] gives it back on drop, on a panic (a hook restores it before the
//! panic is printed) and around a program that needs the real terminal ([`Screen::lend`]:
//! attach), so the user's shell is never left raw, blank or without a cursor. A panic on
//! any thread while the dashboard holds the terminal ends the program (code 101) once its
//! message is printed: a dashboard whose collector died would otherwise go on, frozen, on
//! the terminal it gave back. While the terminal is lent, a panic leaves it to its borrower,
//! and the dashboard ends with the panic's message when the borrower gives it back.

use std::io::{Stdout, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once, PoisonError};

use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::cursor::{Hide, Show};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, Clear, ClearType, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::Terminal;

/// The dashboard's terminal.
pub struct Screen {
    /// What ratatui draws on.
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
}

/// Whether the dashboard holds the terminal now: taken, and neither given back nor lent.
static HELD: AtomicBool = AtomicBool::new(false);

/// The message of a panic while the terminal was lent: the dashboard ends with it when the
/// terminal comes back, a part of it having died.
static LENT_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// Puts the terminal back as the shell had it: main screen, cursor shown, cooked mode.
/// Safe to call when it already is.
pub fn restore() {
    HELD.store(false, Ordering::SeqCst);
    let mut out = std::io::stdout();
    let _ = execute!(out, LeaveAlternateScreen, Show);
    let _ = disable_raw_mode();
    let _ = out.flush();
}

/// Takes the terminal: raw mode, alternate screen, cursor hidden.
fn take() -> std::io::Result<()> {
    HELD.store(true, Ordering::SeqCst);
    enable_raw_mode()?;
    execute!(std::io::stdout(), EnterAlternateScreen, Hide)
}

/// Installs (once) a panic hook that, while the dashboard holds the terminal, restores it
/// before the panic's message and ends the program after it. Other panics (the terminal
/// lent to attach, or the dashboard over) are printed and kept for [`Screen::lend`].
fn restore_on_panic() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let held = HELD.swap(false, Ordering::SeqCst);
            if held {
                restore();
            } else {
                *LENT_PANIC.lock().unwrap_or_else(PoisonError::into_inner) = Some(info.to_string());
            }
            previous(info);
            if held {
                std::process::exit(101);
            }
        }));
    });
}

impl Screen {
    /// Takes the terminal for the dashboard.
    pub fn enter() -> std::io::Result<Self> {
        restore_on_panic();
        take().inspect_err(|_| restore())?;
        let terminal =
            Terminal::new(CrosstermBackend::new(std::io::stdout())).inspect_err(|_| restore())?;
        Ok(Self { terminal })
    }

    /// Gives the terminal to `f` (the real screen, cooked mode, cursor shown) and takes it
    /// back afterwards, blank, to be drawn from scratch. (Not `Terminal::clear`: it asks the
    /// terminal where its cursor is, and one that does not answer would end the dashboard.)
    /// An error, the terminal left as `f` gave it back, when a thread of the program
    /// panicked meanwhile.
    pub fn lend<T>(&mut self, f: impl FnOnce() -> T) -> std::io::Result<T> {
        LENT_PANIC
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        restore();
        let out = f();
        let panicked = LENT_PANIC
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(panic) = panicked {
            return Err(std::io::Error::other(format!(
                "the dashboard stopped: a part of it failed while another program had the terminal: {panic}"
            )));
        }
        take()?;
        execute!(std::io::stdout(), Clear(ClearType::All))?;
        self.terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
        Ok(out)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}
