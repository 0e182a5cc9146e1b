//! `agentbox`: the host CLI.
//!
//! Today: the command-line skeleton and shell completions ([`cli`]). Providers (`local`,
//! `docker`, `daytona`), the bridge daemon and transfers land with their issues.

pub mod cli;
