//! The host bridge and what boxes ask of it: `git`, `approvals`, `approve`, `deny`,
//! `bridge` (`audit` is in `audit.rs`).

use std::process::ExitCode;

use anyhow::bail;

use super::context::{ensure_running, Ctx};
use crate::bridge::journal::HostJournal;
use crate::cli::{ApprovalIdArg, ApprovalsArgs, BridgeCmd, GitArgs};
use crate::home::Home;
use crate::provider::AnyBox;
use crate::text::shown;

/// `agentbox git BOX push|pull|fetch …`: the box's own request, made from the host.
pub fn git(ctx: &Ctx, args: &GitArgs) -> anyhow::Result<ExitCode> {
    if !matches!(
        args.args.first().map(String::as_str),
        Some("push" | "pull" | "fetch")
    ) {
        bail!("`agentbox git BOX` runs push, pull or fetch in the box; use `agentbox exec BOX -- git …` for the rest");
    }
    let record = ctx.resolve(Some(&args.target))?;
    let b = AnyBox::open(&record)?;
    ensure_running(&b, &record.name)?;
    let mut argv = vec!["git".to_string()];
    argv.extend(args.args.iter().cloned());
    let code = b.exec(&argv)?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// `agentbox approvals`.
pub fn approvals(ctx: &Ctx, args: &ApprovalsArgs) -> anyhow::Result<ExitCode> {
    let list = HostJournal::open(&ctx.home.state_db())?.approvals(args.all)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else if list.is_empty() {
        println!("nothing waits for approval");
    } else {
        let now = agentbox_protocol::now_millis();
        for a in list {
            let left = a.expires_ms.saturating_sub(now) / 1000;
            println!(
                "{}  {:<8}  {:<12} {}  ({})",
                shown(&a.id),
                a.state,
                shown(&a.box_name),
                shown(&a.summary),
                if a.state == "pending" {
                    format!("expires in {}m{:02}s", left / 60, left % 60)
                } else {
                    a.kind
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `agentbox approve ID` (`approve`) and `agentbox deny ID`.
pub fn decide(ctx: &Ctx, args: &ApprovalIdArg, approve: bool) -> anyhow::Result<ExitCode> {
    let journal = HostJournal::open(&ctx.home.state_db())?;
    let a = journal.decide(&args.id, approve)?;
    println!(
        "{} {}: {}",
        if approve { "approved" } else { "denied" },
        shown(&a.id),
        shown(&a.summary)
    );
    Ok(ExitCode::SUCCESS)
}

/// `agentbox bridge start|stop|status|run` (`run` is the daemon itself).
pub fn bridge(home: &Home, cmd: &BridgeCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        BridgeCmd::Run => crate::bridge::run(home)?,
        BridgeCmd::Start => {
            let pid = crate::bridge::ensure_started(home)?;
            eprintln!("host bridge running (pid {pid})");
        }
        BridgeCmd::Stop => {
            if crate::bridge::stop(home)? {
                eprintln!("host bridge stopped");
            } else {
                eprintln!("host bridge was not running");
            }
        }
        BridgeCmd::Status { json } => {
            let pid = crate::bridge::running_pid(home);
            if *json {
                println!(
                    "{}",
                    serde_json::json!({ "running": pid.is_some(), "pid": pid })
                );
            } else {
                match pid {
                    Some(pid) => println!("host bridge running (pid {pid})"),
                    None => println!("host bridge not running: `agentbox bridge start`"),
                }
            }
            return Ok(if pid.is_some() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}
