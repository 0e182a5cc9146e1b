//! Arguments of `agentbox screen`.

use std::time::Duration;

use clap::Args;

/// `agentbox screen`.
#[derive(Debug, Args)]
pub struct ScreenArgs {
    /// The box: yours, or a teammate's you joined (then the screen address its invite
    /// carries, when the share allows `url`).
    #[arg(value_name = "BOX")]
    pub target: Option<String>,
    /// How long a Daytona link lasts (1h to 24h, default 1h; it carries its own token). Not
    /// for a joined box: its link lasts as its owner's share.
    #[arg(long, value_parser = super::url::parse_ttl)]
    pub ttl: Option<Duration>,
    /// Also open it in the browser: `$BROWSER` (a `:`-separated list; `%s` stands for the
    /// address), else `xdg-open`, else `open`.
    #[arg(long)]
    pub open: bool,
    /// Print `{"box", "provider", "url"}` as JSON instead of the bare address.
    #[arg(long)]
    pub json: bool,
}
