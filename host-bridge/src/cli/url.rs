//! Arguments of the commands that hand out addresses of a box: `url`, `screen`.

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
    /// How long a Daytona link lasts (1h to 24h; it carries its own token).
    #[arg(long, value_parser = parse_ttl)]
    pub ttl: Option<Duration>,
    /// Also open it in the browser: `$BROWSER` (a `:`-separated list; `%s` stands for the
    /// address), else `xdg-open`, else `open`.
    #[arg(long)]
    pub open: bool,
}

/// `agentbox screen`.
#[derive(Debug, Args)]
pub struct ScreenArgs {
    /// The box.
    #[arg(value_name = "BOX")]
    pub target: Option<String>,
    /// How long a Daytona link lasts (1h to 24h).
    #[arg(long, value_parser = parse_ttl)]
    pub ttl: Option<Duration>,
}

/// `1h` to `24h` (or minutes/seconds that add up to that) for a signed preview link.
fn parse_ttl(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if !(3600..=86_400).contains(&d.as_secs()) {
        return Err(format!("`{text}`: a link lasts from 1h to 24h"));
    }
    Ok(d)
}
