//! The `agentbox-ctl` command line.
//!
//! - `args`: the argument definitions ([`Cli`], [`Cmd`]) and [`quick_parse`], the fast path
//!   for the hot invocations.
//! - `commands`: [`run`], what each client command does and its exit code.
//! - `logs`: `logs` of one unit or several, merged by time, `--json`, `--since-ms`.
//! - `output`: how answers are printed (status table, log lines, `wait-ready`).

mod args;
mod commands;
mod logs;
mod output;

pub use args::{quick_parse, Cli, Cmd, NameArg, SessionCmd, EXIT_UNREACHABLE};
pub use commands::run;
