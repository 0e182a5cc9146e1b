//! Carrying out a box's request on the host. Every command is built here from fixed
//! program names and validated values; nothing from the box is ever a command line, a
//! flag or a path.

use agentbox_protocol::bridge::{HostRequest, Outcome};

/// The result of one request: what goes back to the box and into the audit log.
pub struct Done {
    /// Back to the box.
    pub outcome: Outcome,
    /// `done` or `refused`.
    pub decision: &'static str,
    /// For the audit log.
    pub detail: String,
}

fn outcome(exit_code: i32, stdout: String, stderr: String) -> Outcome {
    Outcome {
        exit_code,
        stdout,
        stderr,
        bundle: None,
    }
}

fn refused(why: String) -> Done {
    Done {
        outcome: outcome(1, String::new(), format!("refused by the host: {why}\n")),
        decision: "refused",
        detail: why,
    }
}

/// Text from the box made safe to show: control characters removed, length capped.
pub fn clean_text(s: &str, max: usize) -> String {
    s.chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .take(max)
        .collect()
}

/// An http(s) URL with nothing that could be read as a flag or escape a single argument.
pub fn valid_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| {
            format!(
                "only http:// and https:// URLs are opened, not `{}`",
                clean_text(url, 80)
            )
        })?;
    if rest.is_empty()
        || url.len() > 4096
        || url.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err("the URL is empty, too long, or contains spaces or control characters".into());
    }
    Ok(())
}

/// The program used to open URLs: `AGENTBOX_OPENER` (host config), else `xdg-open`.
fn opener() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("AGENTBOX_OPENER").filter(|v| !v.is_empty()) {
        return Some(p.into());
    }
    which("xdg-open")
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(program))
        .find(|p| p.is_file())
}

fn run(program: &std::path::Path, args: &[&str]) -> Result<(), String> {
    let status = std::process::Command::new(program)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} failed ({status})", program.display()))
    }
}

/// Carries out `request` from box `box_name`.
pub fn execute(box_name: &str, request: &HostRequest) -> Done {
    match request {
        HostRequest::Notify { message } => {
            let message = clean_text(message, 1000);
            let shown = match which("notify-send") {
                Some(p) => run(
                    &p,
                    &[
                        "--app-name=agentbox",
                        "--",
                        &format!("agentbox: {box_name}"),
                        &message,
                    ],
                )
                .is_ok(),
                None => false,
            };
            let how = if shown {
                "desktop notification"
            } else {
                "no desktop notifier; recorded"
            };
            Done {
                outcome: outcome(0, String::new(), String::new()),
                decision: "done",
                detail: format!("{how}: {message}"),
            }
        }
        HostRequest::Open { url } => {
            if let Err(why) = valid_url(url) {
                return refused(why);
            }
            match opener() {
                Some(p) => match run(&p, &[url]) {
                    Ok(()) => Done { outcome: outcome(0, format!("opened {url}\n"), String::new()), decision: "done", detail: format!("opened {url}") },
                    Err(e) => Done { outcome: outcome(1, String::new(), format!("{e}\n")), decision: "done", detail: e },
                },
                None => Done {
                    outcome: outcome(0, format!("the host has no browser opener; the URL is in `agentbox audit`: {url}\n"), String::new()),
                    decision: "done",
                    detail: format!("no opener; URL {url}"),
                },
            }
        }
        other => refused(format!(
            "`{}` is not supported by this host bridge yet",
            other.kind()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_before_anything_runs() {
        assert!(valid_url("https://example.com/a?b=c").is_ok());
        for bad in [
            "file:///etc/passwd",
            "--help",
            "http://",
            "http://a b",
            "javascript:x",
            "https://x\n-rf",
        ] {
            assert!(valid_url(bad).is_err(), "{bad}");
        }
        let done = execute(
            "b",
            &HostRequest::Open {
                url: "file:///etc/shadow".into(),
            },
        );
        assert_eq!((done.decision, done.outcome.exit_code), ("refused", 1));
    }

    #[test]
    fn text_is_cleaned() {
        assert_eq!(clean_text("a\u{1b}[31mb\u{7}", 100), "a[31mb");
        assert_eq!(clean_text(&"x".repeat(50), 10).len(), 10);
    }
}
