//! Arguments of the commands that look into a box's services and ports: `logs`,
//! `services`, `port`.

use std::time::Duration;

use clap::Args;

use super::duration::parse_duration;

/// `agentbox logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The box.
    #[arg(value_name = "BOX")]
    pub target: Option<String>,
    /// A unit (service or task) of agentbox.yaml; every unit, merged by time, when omitted.
    #[arg(value_name = "UNIT")]
    pub unit: Option<String>,
    /// Keep printing new lines until Ctrl-C; ends by itself when the box stops.
    #[arg(short, long)]
    pub follow: bool,
    /// Only lines from the last DURATION (30s, 5m, 1h), by the box's clock.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub since: Option<Duration>,
    /// The latest lines of each unit to show first (default 200; 50000 with --since).
    #[arg(short = 'n', long, value_name = "N")]
    pub tail: Option<u32>,
    /// One JSON object a line (`unit`, `ts_ms`, `stream`, `line`).
    #[arg(long)]
    pub json: bool,
}

/// `agentbox services`.
#[derive(Debug, Args)]
pub struct ServicesArgs {
    /// The box.
    #[arg(value_name = "BOX")]
    pub target: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `agentbox port`.
#[derive(Debug, Args)]
pub struct PortArgs {
    /// The box (a name, or an index from `agentbox list`).
    #[arg(value_name = "BOX")]
    pub target: String,
    /// The TCP port in the box (any port listening on the box's loopback, declared in
    /// agentbox.yaml or not).
    #[arg(value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// The port on this machine's 127.0.0.1 (default: PORT; 0 picks a free one).
    #[arg(long, value_name = "P")]
    pub local: Option<u16>,
}
