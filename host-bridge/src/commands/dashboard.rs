//! `agentbox dashboard`: the boxes of the project (or all of them) on a live terminal
//! screen (`crate::dashboard`).

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::bail;

use super::context::Ctx;
use crate::cli::DashboardArgs;
use crate::dashboard::Scope;

/// `agentbox dashboard`.
pub fn dashboard(ctx: &Ctx, args: &DashboardArgs) -> anyhow::Result<ExitCode> {
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        bail!("the dashboard needs a terminal; `agentbox list --json` and `agentbox approvals --json` give the same from a program");
    }
    let (scope, title) = match ctx.repo() {
        Some(repo) if !args.global => {
            let title = format!("project {}", crate::text::shown(&repo.to_string_lossy()));
            (Scope::Project(repo), title)
        }
        _ => (Scope::All, "every box (-g)".to_string()),
    };
    crate::dashboard::run(&ctx.home, scope, title)?;
    Ok(ExitCode::SUCCESS)
}
