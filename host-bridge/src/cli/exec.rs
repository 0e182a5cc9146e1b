//! Arguments of the commands that run or show something in a box: `exec`, `attach`,
//! `shell`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::duration::parse_duration;

/// `agentbox exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The box.
    #[arg(value_name = "BOX")]
    pub target: Option<String>,
    /// The command.
    #[arg(last = true, required = true)]
    pub argv: Vec<String>,
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
}

/// `30s`, `5m`, `1h` or plain seconds, at most an hour.
fn parse_window(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d.is_zero() || d.as_secs() > 3600 {
        return Err(format!("`{text}` must be between 1s and 1h"));
    }
    Ok(d)
}
