//! What the dashboard's keys do outside the screen. Each is the command the user would
//! type — `agentbox attach|url --open|screen|stop|start` run as this same program, the box
//! named from the host's own record — so the dashboard does exactly what they do;
//! approvals are decided in the host's store as `agentbox approve|deny` decide them.
//! Only attach takes the terminal; the others run in the background with their output
//! captured, and report one line.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc::Sender;

use crate::bridge::journal::HostJournal;
use crate::home::Home;
use crate::text::shown;

/// What a background action reports when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    /// One line for the message bar.
    pub line: String,
    /// The box it changed (to probe again now), if any.
    pub changed: Option<String>,
}

/// This program, to run the commands the keys stand for.
fn me() -> std::io::Result<PathBuf> {
    std::env::current_exe()
}

/// `agentbox attach [-s SESSION] -- NAME` on this terminal, until the user detaches.
pub fn attach(name: &str, session: Option<&str>) -> String {
    let mut command = match me() {
        Ok(me) => Command::new(me),
        Err(e) => return format!("cannot run agentbox: {e}"),
    };
    command.arg("attach");
    if let Some(s) = session {
        command.args(["--session", s]);
    }
    command.args(["--", name]);
    match command.status() {
        Ok(s) if s.success() => format!("detached from box `{}`", shown(name)),
        Ok(s) => format!(
            "attach to box `{}` ended with {} (its message is above the dashboard: scroll back)",
            shown(name),
            s.code()
                .map_or_else(|| "a signal".into(), |c| format!("code {c}"))
        ),
        Err(e) => format!("cannot run agentbox attach: {e}"),
    }
}

/// Runs `agentbox ARGS` in the background; its last line of output (stderr on failure)
/// goes to `done`, prefixed with `what`, naming the box it `changed`.
pub fn background(args: Vec<String>, what: String, changed: Option<String>, done: Sender<Done>) {
    std::thread::spawn(move || {
        let out = me().and_then(|me| Command::new(me).args(&args).stdin(Stdio::null()).output());
        let line = match out {
            Ok(out) => {
                let stream = if out.status.success() {
                    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
                    if stderr.is_empty() {
                        out.stdout
                    } else {
                        out.stderr
                    }
                } else {
                    out.stderr
                };
                let text = String::from_utf8_lossy(&stream);
                let last = text.trim().lines().last().unwrap_or("").to_string();
                let last = last.strip_prefix("agentbox: ").unwrap_or(&last);
                if out.status.success() {
                    format!("{what}: {}", shown(last))
                } else {
                    format!("{what} failed: {}", shown(last))
                }
            }
            Err(e) => format!("{what} failed: cannot run agentbox: {e}"),
        };
        let _ = done.send(Done { line, changed });
    });
}

/// `agentbox screen -- NAME` in the background, then its link opened in the browser.
pub fn screen(name: &str, done: Sender<Done>) {
    let name = name.to_string();
    std::thread::spawn(move || {
        let out = me().and_then(|me| {
            Command::new(me)
                .args(["screen", "--", &name])
                .stdin(Stdio::null())
                .output()
        });
        let line = match out {
            Ok(out) if out.status.success() => {
                let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if url.starts_with("http://") || url.starts_with("https://") {
                    match crate::browser::open(&url) {
                        Ok(program) => format!(
                            "opened the screen of box `{}` with {}",
                            shown(&name),
                            shown(&program)
                        ),
                        Err(e) => {
                            format!("cannot open {}: {}", shown(&url), shown(&format!("{e:#}")))
                        }
                    }
                } else {
                    format!("screen of box `{}`: no link came back", shown(&name))
                }
            }
            Ok(out) => {
                let text = String::from_utf8_lossy(&out.stderr);
                let last = text.trim().lines().last().unwrap_or("").to_string();
                format!(
                    "screen: {}",
                    shown(last.strip_prefix("agentbox: ").unwrap_or(&last))
                )
            }
            Err(e) => format!("screen failed: cannot run agentbox: {e}"),
        };
        let _ = done.send(Done {
            line,
            changed: None,
        });
    });
}

/// Approves or denies approval `id`, as `agentbox approve|deny ID` does.
pub fn decide(home: &Home, id: &str, approve: bool) -> String {
    let decided = HostJournal::open(&home.state_db())
        .map_err(|e| e.to_string())
        .and_then(|j| j.decide(id, approve).map_err(|e| e.to_string()));
    match decided {
        Ok(a) => format!(
            "{} {}: {}",
            if approve { "approved" } else { "denied" },
            shown(&a.id),
            shown(&a.summary)
        ),
        Err(e) => shown(&e),
    }
}
