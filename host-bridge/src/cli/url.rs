//! Arguments of the commands that hand out addresses of a box: `url` (and the link
//! lifetimes `screen` shares).

use std::time::Duration;

use clap::Args;

use super::duration::parse_duration;

/// `agentbox url`.
#[derive(Debug, Args)]
pub struct UrlArgs {
    /// The box.
    #[arg(value_name = "BOX")]
    pub target: Option<String>,
    /// The port a service exposes (`expose.port` in agentbox.yaml), or 8788 for the
    /// bridge.
    #[arg(long)]
    pub port: Option<u16>,
    /// How long a Daytona link lasts (1h to 24h; it carries its own token). Implies
    /// `--direct`.
    #[arg(long, value_parser = parse_ttl)]
    pub ttl: Option<Duration>,
    /// The provider's own address instead of the proxy's `https://…localhost` one: docker,
    /// the WebProxy's published port (it changes at each start); local, the port on this
    /// machine; Daytona, a signed preview link. `--port 8788` (the bridge) is always
    /// direct.
    #[arg(long)]
    pub direct: bool,
    /// Also open it in the browser: `$BROWSER` (a `:`-separated list; `%s` stands for the
    /// address), else `xdg-open`, else `open`.
    #[arg(long)]
    pub open: bool,
}

/// `1h` to `24h` (or minutes/seconds that add up to that) for a signed preview link.
pub(super) fn parse_ttl(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if !(3600..=86_400).contains(&d.as_secs()) {
        return Err(format!("`{text}`: a link lasts from 1h to 24h"));
    }
    Ok(d)
}
