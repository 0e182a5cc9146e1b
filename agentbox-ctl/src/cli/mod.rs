//! The `agentbox-ctl` command line.
//!
//! - `args`: the argument definitions ([`Cli`], [`Cmd`]) and [`quick_parse`], the fast path
//!   for the hot invocations.
//! - `commands`: [`run`], what each client command does and its exit code.
//! - `output`: how answers are printed (status table, log lines, `wait-ready`).

mod args;
mod commands;
mod output;

pub use args::{quick_parse, Cli, Cmd, NameArg, SessionCmd, EXIT_UNREACHABLE};
pub use commands::run;
