//! Arguments of `agentbox top`.

use std::time::Duration;

use clap::Args;

/// The shortest refresh interval (the relay's own shortest CPU window).
const MIN_INTERVAL: Duration = Duration::from_millis(250);

/// `agentbox top`.
#[derive(Debug, Args)]
#[command(after_help = "\
Measured inside each box by its relay (so the same on local, docker and Daytona boxes):
CPU from the box's own cgroup (v2 cpu.stat / cpu.max, else v1 cpuacct / cfs quota) as a
percentage of its limit (its quota, else its cores); memory used / limit as `docker stats`
counts it (cgroup use less inactive file cache); disk is the workspace's filesystem; the
processes are the box's own from /proc, heaviest CPU first (100% is one core).

A local box shares the host's cgroup, so its numbers are its own processes' (those of the
box's process tree, found by its run directory): CPU and resident memory summed, the
machine's cores and memory as the limits.

CPU needs two readings: the relay keeps the previous one and reports the use since it
(the window is in --json's `window_ms`); a first call reads twice, 0.5 s apart.

On a terminal: a live table redrawn every --interval; q or Ctrl-C ends it and restores
the terminal. Off a terminal: one sample as plain text. --json: one sample as a JSON array,
one object per box (`name`, `provider`, `state`, `stats` or `error`).")]
pub struct TopArgs {
    /// The box (a name, or a number from `agentbox list`); every box of this project when
    /// omitted.
    #[arg(value_name = "BOX")]
    pub target: Option<String>,
    /// Every box of this machine, not only the current project's (the default outside a
    /// git repository).
    #[arg(short = 'g', long, conflicts_with = "target")]
    pub global: bool,
    /// One sample as JSON, then exit.
    #[arg(long)]
    pub json: bool,
    /// Time between refreshes of the live table: 2s, 500ms, 1.5s (at least 250ms).
    #[arg(long, value_name = "D", default_value = "2s", value_parser = parse_interval)]
    pub interval: Duration,
    /// How many processes of each box to show (0-32).
    #[arg(short = 'n', long, value_name = "N", default_value_t = 5,
          value_parser = clap::value_parser!(u8).range(0..=32))]
    pub processes: u8,
}

/// `2s`, `500ms`, `1.5s` or plain seconds; at least [`MIN_INTERVAL`].
fn parse_interval(text: &str) -> Result<Duration, String> {
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 0.001)
    } else {
        (text.strip_suffix('s').unwrap_or(text), 1.0)
    };
    let seconds = number
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0 && *n <= 3600.0)
        .ok_or_else(|| {
            format!("`{text}` is not an interval like 2s, 500ms or 1.5s (at most 1h)")
        })?
        * scale;
    let interval = Duration::from_secs_f64(seconds);
    if interval < MIN_INTERVAL {
        return Err(format!("`{text}` is shorter than 250ms"));
    }
    Ok(interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse() {
        assert_eq!(parse_interval("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_interval("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_interval("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_interval("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_interval("100ms").is_err());
        assert!(parse_interval("fast").is_err());
        assert!(parse_interval("-1s").is_err());
        assert!(parse_interval("NaN").is_err());
    }
}
