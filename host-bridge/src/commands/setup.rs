//! `agentbox completions` (`agentbox install`, the other setup command, is
//! [`super::install`]).

use std::io::Write as _;
use std::process::ExitCode;

use crate::cli::CompletionsArgs;

/// `agentbox completions SHELL`: the completion script on stdout. It asks `agentbox` for
/// the candidates, so box names, sessions and services complete as they are now.
pub fn completions(args: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    let script = crate::completion::script(args.shell)?;
    match std::io::stdout().write_all(&script) {
        // The reader took what it wanted (`| head -1`): nothing is wrong.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other?,
    }
    Ok(ExitCode::SUCCESS)
}
