//! Arguments of the commands that run or show something in a box: `exec`, `attach`,
//! `shell`.

use std::path::PathBuf;
use std::time::Duration;

use agentbox_protocol::exec::{valid_env_name, ExecRequest};
use agentbox_protocol::term::TermSize;
use clap::Args;

use super::duration::parse_duration;

/// `agentbox exec`: as `docker exec`. Exit codes: the command's own; 125 when agentbox
/// cannot run it (no such box, a stopped box, a bad option); 126 when the box cannot
/// execute it (not executable, no such directory or user); 127 when there is no such
/// program.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  agentbox exec mybox -- ls -la\n  agentbox exec mybox ls -la\n  agentbox exec -it mybox -- bash\n  agentbox exec -d -e MODE=fast -w sub mybox -- ./job.sh\n\nExit status: the command's; 125: agentbox could not run it; 126: the box cannot execute it; 127: no such program."
)]
pub struct ExecArgs {
    /// Run it in the background and return at once (no output, no exit code).
    #[arg(short, long)]
    pub detach: bool,
    /// Set an environment variable, `KEY=VALUE` (or `KEY`: its value here); repeatable.
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Where it runs: absolute, or relative to the workspace (default: the workspace).
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// Run it as this user of the box (a name or uid).
    #[arg(short, long)]
    pub user: Option<String>,
    /// Keep stdin open and give it to the command (else it reads nothing).
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the command a terminal (for `bash`, `top`, editors); needs one here.
    #[arg(short, long)]
    pub tty: bool,
    /// The box.
    #[arg(value_name = "BOX")]
    pub target: Option<String>,
    /// The command, after the box or after `--` (`agentbox exec BOX ls -la`,
    /// `agentbox exec BOX -- ls -la`; with no BOX, `agentbox exec -- ls`: the box of this
    /// directory).
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

impl ExecArgs {
    /// Puts back a `BOX` that came after `--` into the command (`agentbox exec -- ls`:
    /// no box named, the command is `ls`); `raw` is the command line as typed.
    pub fn settle(&mut self, raw: impl IntoIterator<Item = String>) {
        if self.target.is_some() && box_after_dashes(raw) {
            let first = self.target.take().unwrap_or_default();
            self.command.insert(0, first);
        }
    }

    /// The command to run; an error saying how to give one.
    pub fn command_line(&self) -> Result<Vec<String>, String> {
        if self.command.is_empty() {
            return Err(
                "no command given: `agentbox exec BOX -- COMMAND [ARGS...]` (or, in a box's directory, `agentbox exec -- COMMAND`)"
                    .into(),
            );
        }
        Ok(self.command.clone())
    }

    /// What to run, checked: the command, `-e` (a bare `KEY` takes its value from
    /// `host_env`, and is left out when unset there, as `docker exec` does), `-w`, `-u`,
    /// `-i`, `-d`, and `-t` as a terminal of `size`.
    pub fn request(
        &self,
        host_env: impl Fn(&str) -> Option<String>,
        size: TermSize,
    ) -> Result<ExecRequest, String> {
        let mut request = ExecRequest::new(self.command_line()?);
        for entry in &self.env {
            let (key, value) = match entry.split_once('=') {
                Some((k, v)) => (k, Some(v.to_string())),
                None => (entry.as_str(), host_env(entry)),
            };
            if !valid_env_name(key) {
                return Err(format!(
                    "-e `{entry}`: `{key}` is not a variable name (letters, digits, `_`; not starting with a digit)"
                ));
            }
            if let Some(v) = value {
                request.env.insert(key.to_string(), v);
            }
        }
        if self.detach && (self.interactive || self.tty) {
            return Err("-d runs the command in the background: it takes no -i or -t".into());
        }
        request.cwd = self.workdir.clone().filter(|w| !w.is_empty());
        request.user.clone_from(&self.user);
        request.stdin = self.interactive;
        request.detach = self.detach;
        request.tty = self.tty.then_some(size);
        request.validate().map_err(|e| e.to_string())?;
        Ok(request)
    }
}

/// `agentbox attach`.
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// The box.
    #[arg(value_name = "BOX")]
    pub target: Option<String>,
    /// Session name (default: the box's only session).
    #[arg(long, short)]
    pub session: Option<String>,
    /// Attach options.
    #[command(flatten)]
    pub view: ViewArgs,
}

/// `agentbox shell`.
#[derive(Debug, Args)]
pub struct ShellArgs {
    /// The box.
    #[arg(value_name = "BOX")]
    pub target: Option<String>,
    /// Name of the new session (default: shell-N).
    #[arg(long)]
    pub name: Option<String>,
    /// Attach options.
    #[command(flatten)]
    pub view: ViewArgs,
}

/// Whether, in `raw` (a command line), the first positional word after `exec` comes
/// after a `--`: then it is the command, not a box.
fn box_after_dashes(raw: impl IntoIterator<Item = String>) -> bool {
    let mut words = raw.into_iter().skip_while(|w| w != "exec").skip(1);
    while let Some(w) = words.next() {
        match w.as_str() {
            "--" => return true,
            "-e" | "--env" | "-w" | "--workdir" | "-u" | "--user" => {
                words.next();
            }
            _ if w.starts_with('-') => {}
            _ => return false,
        }
    }
    false
}

/// How `attach` and `shell` view a session.
#[derive(Debug, Args)]
pub struct ViewArgs {
    /// Watch without typing (only detach, Ctrl-a d, works).
    #[arg(long)]
    pub read_only: bool,
    /// auto: WebSocket, or HTTP streaming when the path refuses it.
    #[arg(long, value_enum, default_value = "auto")]
    pub transport: crate::attach::wire::Transport,
    /// How long a cut connection may take to come back and resume with no output lost
    /// (e.g. 30s, 5m, 1h; at most 1h).
    #[arg(long, default_value = "5m", value_parser = parse_window)]
    pub reconnect_window: Duration,
    /// Append a copy of everything the session prints to this file.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Attach even though stdin or stdout is not a terminal (scripts, tests): the
    /// session's raw screen output, escape codes included, goes to stdout, and stdin is
    /// typed into the session. Without it, `attach` and `shell` refuse to run off a
    /// terminal.
    #[arg(short = 'T', long)]
    pub no_tty: bool,
}

/// `30s`, `5m`, `1h` or plain seconds, at most an hour.
fn parse_window(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d.is_zero() || d.as_secs() > 3600 {
        return Err(format!("`{text}` must be between 1s and 1h"));
    }
    Ok(d)
}
