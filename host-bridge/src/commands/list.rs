//! `agentbox list` (also `ls`, `ps`): the boxes as an aligned table, their names, or JSON.

use std::io::IsTerminal;
use std::process::ExitCode;

use comfy_table::{presets, Cell, Color, ContentArrangement, Table};

use super::boxes::{agents_json, BRIDGE_DOWN};
use super::context::Ctx;
use crate::cli::{ListArgs, ListFilter, ListFormat, ListKey};
use crate::provider::AnyBox;
use crate::text::shown;

/// One box as `list` shows it.
struct Row {
    number: u64,
    record: crate::state::BoxRecord,
    state: String,
    json: serde_json::Value,
}

/// Whether `row` passes every filter.
fn wanted(row: &Row, filters: &[ListFilter]) -> bool {
    filters.iter().all(|f| match f.key {
        ListKey::Name => row.record.name == f.value,
        ListKey::Provider => row.record.provider == f.value,
        ListKey::State => row.state == f.value,
        ListKey::Project => {
            let asked = std::path::Path::new(&f.value);
            row.record.project == asked
                || std::fs::canonicalize(asked).is_ok_and(|p| p == row.record.project)
        }
    })
}

/// Whether stdout takes colours: a terminal, and NO_COLOR unset or empty
/// (<https://no-color.org>).
fn colours() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The colour of a box state.
fn state_colour(state: &str) -> Color {
    match state {
        "running" => Color::Green,
        "stopped" => Color::Yellow,
        "creating" => Color::Cyan,
        _ => Color::Red,
    }
}

/// `agentbox list`.
pub fn list(ctx: &Ctx, args: &ListArgs) -> anyhow::Result<ExitCode> {
    let boxes = ctx.state.numbered()?;
    let bridge_running = crate::bridge::running_pid(&ctx.home).is_some();
    let rows: Vec<Row> = boxes
        .into_iter()
        .map(|(number, b)| {
            let running = b.phase == "ready" && AnyBox::open(&b).is_ok_and(|x| x.running());
            // A teammate's box: its state is its owner's to know (no provider here).
            let state = if b.is_joined() {
                "joined".into()
            } else if b.phase != "ready" {
                b.phase.clone()
            } else if running {
                "running".into()
            } else {
                "stopped".into()
            };
            let agents = crate::agents::load(&ctx.home.agent_states(&b.name));
            let json = serde_json::json!({
                "index": number, "name": b.name, "provider": b.provider, "state": state,
                "project": b.project, "branch": b.branch, "created_at_ms": b.created_at_ms,
                "agents": agents_json(&agents, running),
                "agents_summary": crate::agents::summary(&agents, running),
                "bridge_running": bridge_running,
            });
            Row {
                number,
                record: b,
                state,
                json,
            }
        })
        .filter(|r| wanted(r, &args.filter))
        .collect();
    if args.quiet {
        for r in &rows {
            println!("{}", r.record.name);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.json || args.format == ListFormat::Json {
        let json: Vec<&serde_json::Value> = rows.iter().map(|r| &r.json).collect();
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        if args.filter.is_empty() {
            println!("no boxes: create one with `agentbox create` inside a git repository");
        } else {
            println!("no box matches the filters (`agentbox list` shows them all)");
        }
    } else {
        println!("{}", table(&rows, colours()));
    }
    // Only this machine's own boxes wait on its bridge: a joined box's requests are its
    // owner's host's to answer.
    if !bridge_running && rows.iter().any(|r| !r.record.is_joined()) {
        println!("{BRIDGE_DOWN}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The table of `rows`: columns as wide as their widest cell, never wrapped or cut.
fn table(rows: &[Row], colour: bool) -> Table {
    let now = crate::when::now_ms();
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header([
            "#", "NAME", "PROVIDER", "STATE", "AGENTS", "CREATED", "PROJECT",
        ]);
    if colour {
        table.enforce_styling();
    } else {
        table.force_no_tty();
    }
    for r in rows {
        let mut state = Cell::new(&r.state);
        if colour {
            state = state.fg(state_colour(&r.state));
        }
        table.add_row(vec![
            Cell::new(r.number),
            Cell::new(shown(&r.record.name)),
            Cell::new(&r.record.provider),
            state,
            Cell::new(shown(r.json["agents_summary"].as_str().unwrap_or(""))),
            Cell::new(crate::when::ago(r.record.created_at_ms, now)),
            Cell::new(shown(&r.record.project.to_string_lossy())),
        ]);
    }
    // No border: two spaces after each cell.
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table
}
