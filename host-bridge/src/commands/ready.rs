//! `create`'s wait for the box's units: what it waits for is shown on stderr as it goes,
//! a unit that dies before it is ready ends the wait at once with its last log lines,
//! and a service's own `ready_when.timeout_ms` bounds how long it is waited for.

use std::fmt::Write;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::provider::AnyBox;
use crate::text::{shown, shown_lines};

/// How long one `agentbox-ctl wait-ready` call in the box may wait: short, so that the
/// host shows progress between calls and a call stays far inside a provider's command
/// limit.
const STEP_MS: u64 = 5_000;

/// The first call's wait: units ready by then are not shown as waited for.
const FIRST_STEP_MS: u64 = 500;

/// How long units that bound themselves with no probe of their own (tasks, services
/// waiting on them) are waited for before `create` goes on with a warning.
const UNBOUNDED_WAIT: Duration = Duration::from_secs(60);

/// How many of a failed unit's last log lines are shown.
const LOG_LINES: &str = "15";

/// Waits until the box's units are ready. `Err` when one failed (exited before it was
/// ready, its probe gave up, a task failed), naming it with its last log lines; a wait
/// that runs out only on units with no timeout of their own warns and returns `Ok`.
pub fn wait_for_units(b: &AnyBox, name: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut shown_waits = String::new();
    // The first step is short: what is not ready at once is shown as waited for.
    let mut step_ms = FIRST_STEP_MS;
    loop {
        let out = b.ctl(&["wait-ready", "--timeout", &step_ms.to_string(), "--json"])?;
        step_ms = STEP_MS;
        let report: serde_json::Value = match serde_json::from_slice(&out.stdout) {
            Ok(v) => v,
            Err(_) => bail!(
                "cannot wait for the units of box `{name}`: {}",
                shown(String::from_utf8_lossy(&out.stderr).trim())
            ),
        };
        if report["ready"] == true {
            return Ok(());
        }
        let problems = |key: &str| -> Vec<(String, String, String)> {
            report[key]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    let text = |k: &str| p[k].as_str().unwrap_or_default().to_string();
                    (text("name"), text("state"), text("reason"))
                })
                .collect()
        };
        let failed = problems("failed");
        if !failed.is_empty() {
            let mut text = String::new();
            for (unit, _, reason) in &failed {
                let _ = writeln!(
                    text,
                    "unit `{}` failed before it was ready: {}",
                    shown(unit),
                    shown(reason)
                );
                text.push_str(&last_lines(b, unit));
            }
            bail!("{text}fix agentbox.yaml (or what the unit runs) and create the box again");
        }
        let pending = problems("timed_out");
        let waits = pending
            .iter()
            .map(|(unit, state, reason)| {
                format!(
                    "{} ({})",
                    shown(unit),
                    if reason.is_empty() { state } else { reason }
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        if waits != shown_waits {
            crate::transfer::progress::step(&format!("waiting for {waits}"));
            shown_waits = waits;
        }
        // A starting service is bounded by its own probe's timeout; the rest by ours.
        let probing = pending.iter().any(|(_, state, _)| state == "starting");
        if !probing && started.elapsed() >= UNBOUNDED_WAIT {
            eprintln!(
                "warning: not every unit is ready: {shown_waits} (see `agentbox status {name}`)"
            );
            return Ok(());
        }
    }
}

/// A unit's last log lines, indented, for an error.
fn last_lines(b: &AnyBox, unit: &str) -> String {
    match b.ctl(&["logs", unit, "-n", LOG_LINES]) {
        Ok(out) if out.status.success() && !out.stdout.is_empty() => {
            let lines = shown_lines(&String::from_utf8_lossy(&out.stdout));
            let mut text = String::from("  its last log lines:\n");
            for l in lines.lines() {
                let _ = writeln!(text, "    {l}");
            }
            text
        }
        _ => String::new(),
    }
}
