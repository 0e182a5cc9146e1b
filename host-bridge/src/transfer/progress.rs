//! Progress, the one place that writes it: step lines (`==> …`) and byte meters, always on
//! stderr, so that stdout holds only a command's result (with `--json`, JSON and nothing
//! else). A meter redraws its line (`\r`) only when stderr is a terminal; anywhere else (a
//! pipe, a log file, CI) it writes one plain line when its transfer is done.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a meter on a terminal is redrawn at most.
const REDRAW: Duration = Duration::from_millis(100);

/// Writes a step line to stderr (`==> LINE`).
pub fn step(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "==> {line}");
}

/// Writes a line under the current step to stderr (indented: a build's `Step 3/20`).
pub fn detail(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "    {line}");
}

/// A byte meter named `label` for a transfer's progress callback (bytes done, bytes in
/// all): a line redrawn in place on a terminal, else one plain line at the end.
pub fn meter(label: &str) -> impl Fn(u64, u64) + Sync + '_ {
    let meter = Meter::new(label, std::io::stderr().is_terminal());
    move |done, all| {
        if let Some(text) = meter.update(done, all, Instant::now()) {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(text.as_bytes());
            let _ = err.flush();
        }
    }
}

/// What a meter has shown so far, and what it shows next.
struct Meter<'a> {
    label: &'a str,
    tty: bool,
    /// When it was last drawn, and whether its end was written.
    state: Mutex<(Option<Instant>, bool)>,
}

impl<'a> Meter<'a> {
    fn new(label: &'a str, tty: bool) -> Self {
        Self {
            label,
            tty,
            state: Mutex::new((None, false)),
        }
    }

    /// The text to write for `done` of `all` bytes at `now`, if any.
    fn update(&self, done: u64, all: u64, now: Instant) -> Option<String> {
        let Ok(mut state) = self.state.lock() else {
            return None;
        };
        let (last, ended) = &mut *state;
        if *ended {
            return None;
        }
        let end = done >= all;
        let mib = |b: u64| b as f64 / f64::from(1 << 20);
        if !self.tty {
            if !end {
                return None;
            }
            *ended = true;
            return Some(format!("==> {}: {:.1} MiB\n", self.label, mib(all)));
        }
        if !end && last.is_some_and(|t| now.duration_since(t) < REDRAW) {
            return None;
        }
        *last = Some(now);
        *ended = end;
        Some(format!(
            "\r\x1b[K{}: {:.1} / {:.1} MiB{}",
            self.label,
            mib(done),
            mib(all),
            if end { "\n" } else { "" }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_a_terminal_a_meter_writes_one_plain_line_at_the_end() {
        let m = Meter::new("to box", false);
        let t = Instant::now();
        assert_eq!(m.update(1 << 20, 3 << 20, t), None);
        assert_eq!(
            m.update(3 << 20, 3 << 20, t).as_deref(),
            Some("==> to box: 3.0 MiB\n")
        );
        assert_eq!(m.update(3 << 20, 3 << 20, t), None, "the end once");
    }

    #[test]
    fn on_a_terminal_a_meter_redraws_at_most_ten_times_a_second() {
        let m = Meter::new("to box", true);
        let t = Instant::now();
        let first = m.update(1 << 20, 2 << 20, t).expect("first draw");
        assert!(
            first.starts_with("\r\x1b[Kto box: 1.0 / 2.0 MiB"),
            "{first:?}"
        );
        assert_eq!(
            m.update(1 << 20, 2 << 20, t + Duration::from_millis(10)),
            None
        );
        let end = m
            .update(2 << 20, 2 << 20, t + Duration::from_millis(20))
            .expect("the end is always drawn");
        assert!(end.ends_with("2.0 / 2.0 MiB\n"), "{end:?}");
    }
}
