//! `agentbox audit`: what boxes asked the host to do and what the host answered, as a
//! table in this machine's time zone, or as recorded (`--json`).

use std::process::ExitCode;

use comfy_table::{presets, ContentArrangement, Table};

use super::context::Ctx;
use crate::bridge::journal::{AuditEntry, HostJournal};
use crate::cli::AuditArgs;
use crate::text::shown;

/// `agentbox audit [--box BOX] [--since DURATION] [--json]`.
pub fn audit(ctx: &Ctx, args: &AuditArgs) -> anyhow::Result<ExitCode> {
    let since_ms = args
        .since
        .map(|d| crate::when::now_ms().saturating_sub(d.as_millis() as u64));
    let entries: Vec<AuditEntry> = HostJournal::open(&ctx.home.state_db())?
        .entries()?
        .into_iter()
        .filter(|e| args.target.as_ref().is_none_or(|b| e.box_name == *b))
        .filter(|e| since_ms.is_none_or(|t| e.ts_ms >= t))
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
    } else if entries.is_empty() {
        let filtered = args.target.is_some() || args.since.is_some();
        println!(
            "no requests from boxes {}",
            if filtered { "match" } else { "yet" }
        );
    } else {
        println!("{}", table(&entries));
    }
    Ok(ExitCode::SUCCESS)
}

/// The entries under a header, columns as wide as their widest cell.
fn table(entries: &[AuditEntry]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .force_no_tty()
        .set_header(["TIME", "BOX", "KIND", "DECISION", "EXIT", "DETAIL"]);
    for e in entries {
        table.add_row(vec![
            crate::when::local(e.ts_ms),
            shown(&e.box_name),
            shown(&e.kind),
            shown(&e.decision),
            e.exit_code.to_string(),
            shown(&e.detail),
        ]);
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table
}
