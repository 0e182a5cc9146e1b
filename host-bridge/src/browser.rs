//! Opening an address in this machine's browser, for `agentbox url --open`, `screen`, the
//! dashboard and a box's `agentbox-ctl open`, all alike: `AGENTBOX_OPENER` (one program,
//! agentbox's own setting), else `$BROWSER` (a `:`-separated list of commands, each tried in
//! turn, `%s` standing for the address, else the address last), else `xdg-open`, else `open`
//! (macOS).

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a browser program is given to fail before it counts as having taken the
/// address: an opener (`xdg-open`) hands the address on and ends at once, while a browser
/// started by its own name (`BROWSER=firefox`) runs until its window is closed.
const GRACE: Duration = Duration::from_secs(5);

/// Why an address was not opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// None of the candidates exists on this machine.
    #[error(
        "no browser to open it with: set BROWSER to your browser's command, or install xdg-open"
    )]
    NoBrowser,
    /// Each candidate found ran and failed (`program (why)`, in order).
    #[error("no browser opened it (tried {}): set BROWSER to your browser's command", .0.join(", "))]
    Failed(Vec<String>),
}

/// Opens `url`; returns the program that took it. The address is always one argument,
/// never a shell line.
pub fn open(url: &str) -> Result<String, OpenError> {
    let mut tried = Vec::new();
    let mut candidates: Vec<Vec<String>> = Vec::new();
    if let Some(p) = std::env::var("AGENTBOX_OPENER")
        .ok()
        .filter(|v| !v.is_empty())
    {
        candidates.push(vec![p]);
    }
    let from_env = std::env::var("BROWSER").unwrap_or_default();
    candidates.extend(
        from_env
            .split(':')
            .map(|c| c.split_whitespace().map(String::from).collect::<Vec<_>>())
            .filter(|words| !words.is_empty()),
    );
    candidates.push(vec!["xdg-open".into()]);
    candidates.push(vec!["open".into()]);
    for words in candidates {
        let program = words[0].clone();
        let Some(path) = crate::shell::which(&program).or_else(|| {
            let p = std::path::PathBuf::from(&program);
            p.is_absolute().then_some(p)
        }) else {
            continue;
        };
        let mut args: Vec<String> = words[1..].iter().map(|w| w.replace("%s", url)).collect();
        if !words[1..].iter().any(|w| w.contains("%s")) {
            args.push(url.to_string());
        }
        let child = Command::new(&path)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn();
        match child.map(launched) {
            Ok(None) => return Ok(program),
            Ok(Some(s)) if s.success() => return Ok(program),
            Ok(Some(s)) => tried.push(format!("{program} ({s})")),
            Err(e) => tried.push(format!("{program} ({e})")),
        }
    }
    if tried.is_empty() {
        return Err(OpenError::NoBrowser);
    }
    Err(OpenError::Failed(tried))
}

/// The exit status of `child` if it ends within [`GRACE`]; `None` when it still runs (a
/// browser that took the address and stays open), then reaped in the background so that
/// neither `url --open` nor the host bridge waits for the user to close a window.
fn launched(mut child: Child) -> Option<ExitStatus> {
    let deadline = Instant::now() + GRACE;
    let mut pause = Duration::from_millis(5);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            _ => break,
        }
    }
    let _ = std::thread::Builder::new()
        .name("browser-reaper".into())
        .spawn(move || child.wait());
    None
}
