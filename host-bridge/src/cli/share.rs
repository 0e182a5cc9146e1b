//! Arguments of sharing a box with a teammate: `share` (mint, list, revoke) and `join`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::duration::parse_duration;

/// `agentbox share`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").args(["list", "revoke"])))]
pub struct ShareArgs {
    /// The box (one of yours; a joined box cannot be shared on).
    #[arg(value_name = "BOX")]
    pub target: Option<String>,
    /// Let the teammate type into the box's sessions (scope `attach:write`); without it
    /// they only watch.
    #[arg(long, conflicts_with_all = ["list", "revoke"])]
    pub write: bool,
    /// How long the invite works (30s, 5m, 1h; default 24h, at most 720h). A Daytona
    /// invite's preview link lasts at most 24h.
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl, conflicts_with_all = ["list", "revoke"])]
    pub ttl: Option<Duration>,
    /// Write the invite to FILE (mode 0600) instead of printing it.
    #[arg(long, short, value_name = "FILE", conflicts_with_all = ["list", "revoke"])]
    pub output: Option<PathBuf>,
    /// List the box's live shares (id, scopes, expiry).
    #[arg(long)]
    pub list: bool,
    /// Revoke share ID (from `--list`): its token stops working at once and the sessions
    /// opened with it end within seconds.
    #[arg(long, value_name = "ID")]
    pub revoke: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `agentbox join`.
#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The invite `agentbox share` printed (`abx1_…`), `@FILE` to read it from a file,
    /// or `-` to read it from stdin.
    #[arg(value_name = "INVITE")]
    pub invite: String,
    /// The name of the box here (default: its owner's name for it).
    #[arg(long, value_name = "N")]
    pub name: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// 1 s to 720 h.
fn parse_ttl(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d.is_zero() || d.as_secs() > 720 * 3600 {
        return Err(format!("`{text}` must be between 1s and 720h (30 days)"));
    }
    Ok(d)
}
