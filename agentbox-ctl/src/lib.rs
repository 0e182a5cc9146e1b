//! `agentbox-ctl`: the in-box supervisor and the CLI that talks to it.
//!
//! - [`config`]: `agentbox.yaml` → units, with `file:line:col` errors.
//! - [`supervisor`]: the unit state machine, process groups, probes, restarts, run_once.
//! - [`logs`]: per-unit log files with rotation; tail and follow.
//! - [`session`]: agent sessions on the box's private tmux server.
//! - [`server`] / [`client`]: the two ends of `ctl.sock`.
//! - [`daemon`]: lock, socket, signals, shutdown.
//! - [`host`]: requests to the host (`notify`, `open`) through the relay; [`git`]: `git push`
//!   as a bundle the host pushes.
//! - [`gh`]: `gh pr create|view|list` as typed requests to the host.
//! - [`copy`]: `cp --to-host|--from-host` through the host bridge.
//! - [`cli`]: argument parsing and output.
//! - [`paths`]: the environment contract.
//! - [`http_target`]: the URL of an `http:` readiness probe (checked by [`config`], used
//!   by [`supervisor`]).

pub mod agents;
pub mod cli;
pub mod client;
pub mod config;
pub mod copy;
pub mod daemon;
pub mod gh;
pub mod git;
pub mod hooks;
pub mod host;
pub mod http_target;
pub mod logs;
pub mod paths;
pub mod screen;
pub mod server;
pub mod session;
pub mod supervisor;
