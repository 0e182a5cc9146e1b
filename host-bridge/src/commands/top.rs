//! `agentbox top [BOX] [-g] [--json] [--interval D]`: each box's CPU, memory, disk and
//! heaviest processes, as the box's relay measures them ([`crate::stats::fetch`]). A live
//! table on a terminal (alternate screen, raw keys: q or Ctrl-C ends it, the terminal is
//! restored on every way out), one plain sample off a terminal, one JSON sample with
//! `--json`. Every string of a box's is escaped before it is shown.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use agentbox_protocol::stats::BoxStats;
use anyhow::bail;

use super::context::{relay_of, Ctx};
use crate::cli::TopArgs;
use crate::provider::AnyBox;
use crate::state::BoxRecord;
use crate::text::shown;
use crate::transfer::client::Relay;

/// One box of the table.
struct Target {
    record: BoxRecord,
    /// Its relay, when it runs; else why not.
    relay: Result<Relay, String>,
}

/// One box's sample (or why there is none).
struct Row<'a> {
    record: &'a BoxRecord,
    state: &'static str,
    outcome: Result<BoxStats, String>,
}

/// `agentbox top`.
pub fn top(ctx: &Ctx, args: &TopArgs) -> anyhow::Result<ExitCode> {
    let records = boxes(ctx, args)?;
    let targets: Vec<Target> = records
        .into_iter()
        .map(|record| {
            let relay = match AnyBox::open(&record) {
                Ok(b) if record.phase == "ready" && b.running() => {
                    relay_of(&record).map_err(|e| shown(&format!("{e:#}")))
                }
                Ok(_) => Err("stopped".to_string()),
                Err(e) => Err(shown(&format!("{e:#}"))),
            };
            Target { record, relay }
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let n = usize::from(args.processes);
    if !args.json && std::io::stdout().is_terminal() {
        return runtime.block_on(live(&targets, n, args.interval));
    }
    let rows = runtime.block_on(sample(&targets, n));
    let failed = rows
        .iter()
        .any(|r| r.state == "running" && r.outcome.is_err());
    if args.json {
        let json: Vec<serde_json::Value> = rows.iter().map(row_json).collect();
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print!("{}", render(&rows, None));
    }
    if let (
        Some(_),
        Some(Row {
            outcome: Err(e), ..
        }),
    ) = (&args.target, rows.first())
    {
        // Printed here, not returned: it was escaped where it was made.
        eprintln!("agentbox: box `{}`: {e}", shown(&targets[0].record.name));
        return Ok(ExitCode::from(1));
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The boxes asked for: BOX, or with `-g` (or outside a repository) every box, else this
/// project's.
fn boxes(ctx: &Ctx, args: &TopArgs) -> anyhow::Result<Vec<BoxRecord>> {
    if let Some(t) = &args.target {
        return Ok(vec![ctx.resolve(Some(t))?]);
    }
    let all = ctx.state.numbered()?;
    let repo = if args.global { None } else { ctx.repo() };
    let chosen: Vec<BoxRecord> = all
        .into_iter()
        .map(|(_, b)| b)
        .filter(|b| repo.as_ref().is_none_or(|r| &b.project == r))
        .collect();
    if chosen.is_empty() {
        match repo {
            Some(_) => bail!("this project has no box: create one with `agentbox create`, or see every project's with `agentbox top -g`"),
            None => bail!("there is no box: create one with `agentbox create` inside a git repository"),
        }
    }
    Ok(chosen)
}

/// One sample of every box, at the same time.
async fn sample(targets: &[Target], n: usize) -> Vec<Row<'_>> {
    let asks = targets.iter().map(|t| async move {
        match &t.relay {
            Ok(relay) => Row {
                record: &t.record,
                state: "running",
                outcome: crate::stats::fetch(relay, n)
                    .await
                    .map_err(|e| format!("{e:#}")),
            },
            Err(why) => Row {
                record: &t.record,
                state: if why == "stopped" { "stopped" } else { "error" },
                outcome: Err(why.clone()),
            },
        }
    });
    futures_util::future::join_all(asks).await
}

fn row_json(row: &Row<'_>) -> serde_json::Value {
    let (stats, error) = match &row.outcome {
        Ok(s) => (serde_json::to_value(s).unwrap_or_default(), None),
        Err(e) => (serde_json::Value::Null, Some(e.as_str())),
    };
    serde_json::json!({
        "name": row.record.name,
        "provider": row.record.provider,
        "state": row.state,
        "stats": stats,
        "error": error,
    })
}

/// Bytes as `1.5 GiB`.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".into()
    } else {
        format!("{:.0}%", part as f64 / whole as f64 * 100.0)
    }
}

/// `text` cut to `width` characters (with `…` when cut).
fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(width.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// The lines of `rows`, each cut to `width` characters when given.
fn render(rows: &[Row<'_>], width: Option<usize>) -> String {
    let mut out = String::new();
    let mut line = |l: String| {
        out.push_str(&width.map_or_else(|| l.clone(), |w| cut(&l, w)));
        out.push('\n');
    };
    for row in rows {
        let name = shown(&row.record.name);
        match &row.outcome {
            Err(_) if row.state == "stopped" => {
                line(format!("{name} ({}): stopped", row.record.provider));
            }
            // Escaped where it was made.
            Err(why) => line(format!("{name} ({}): {why}", row.record.provider)),
            Ok(s) => {
                line(format!(
                    "{name} ({})  CPU {:.1}% of {:.2} cores ({:.2} used)  MEM {} / {} ({})  DISK {} / {} ({})  {} processes",
                    row.record.provider,
                    s.cpu.percent,
                    s.cpu.limit_cores,
                    s.cpu.used_cores,
                    size(s.memory.used_bytes),
                    size(s.memory.limit_bytes),
                    percent(s.memory.used_bytes, s.memory.limit_bytes),
                    size(s.disk.used_bytes),
                    size(s.disk.size_bytes),
                    percent(s.disk.used_bytes, s.disk.size_bytes),
                    s.process_count,
                ));
                if !s.processes.is_empty() {
                    line(format!(
                        "  {:>7} {:<10} {:>6} {:>10}  COMMAND",
                        "PID", "USER", "CPU%", "RSS"
                    ));
                }
                for p in &s.processes {
                    line(format!(
                        "  {:>7} {:<10} {:>6.1} {:>10}  {}",
                        p.pid,
                        // Escaped by `stats::fetch`.
                        cut(&p.user, 10),
                        p.cpu_percent,
                        size(p.rss_bytes),
                        p.command,
                    ));
                }
            }
        }
    }
    out
}

/// The alternate screen with the cursor hidden, and stdin raw, until dropped.
struct Screen {
    _raw: Option<crate::attach::terminal::RawMode>,
}

impl Screen {
    fn enter() -> std::io::Result<Self> {
        let raw = crate::attach::terminal::RawMode::enable()?;
        let mut out = std::io::stdout().lock();
        out.write_all(b"\x1b[?1049h\x1b[?25l")?;
        out.flush()?;
        Ok(Self { _raw: raw })
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(b"\x1b[?25h\x1b[?1049l");
        let _ = out.flush();
    }
}

/// Whether `keys` hold q or Ctrl-C (raw mode: Ctrl-C is a byte, not a signal).
fn quits(keys: &[u8]) -> bool {
    keys.iter().any(|k| matches!(k, b'q' | b'Q' | 0x03))
}

/// The live table, redrawn every `interval` until q, Ctrl-C or SIGTERM.
async fn live(targets: &[Target], n: usize, interval: Duration) -> anyhow::Result<ExitCode> {
    let screen = Screen::enter()?;
    let mut keys = if std::io::stdin().is_terminal() {
        Some(crate::attach::terminal::keystrokes())
    } else {
        None
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is now.
    ticks.tick().await;
    loop {
        let rows = tokio::select! {
            rows = sample(targets, n) => rows,
            () = quit(&mut keys) => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        };
        let size = crate::attach::terminal::size();
        let width = usize::from(size.cols);
        let header = format!(
            "agentbox top — every {:.1} s — q or Ctrl-C quits",
            interval.as_secs_f64()
        );
        let body = render(&rows, Some(width));
        let lines: Vec<String> = std::iter::once(cut(&header, width))
            .chain(body.lines().map(str::to_string))
            .take(usize::from(size.rows))
            .collect();
        {
            let mut out = std::io::stdout().lock();
            // Raw mode: a line ends with CR LF.
            out.write_all(b"\x1b[H\x1b[2J")?;
            out.write_all(lines.join("\r\n").as_bytes())?;
            out.flush()?;
        }
        tokio::select! {
            _ = ticks.tick() => {}
            () = quit(&mut keys) => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    drop(screen);
    Ok(ExitCode::SUCCESS)
}

/// Resolves when a quitting key arrives (never without a keyboard).
async fn quit(keys: &mut Option<tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>>) {
    loop {
        match keys {
            Some(rx) => match rx.recv().await {
                Some(k) if quits(&k) => return,
                Some(_) => {}
                None => *keys = None,
            },
            None => std::future::pending::<()>().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_cuts() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(3 << 30), "3.0 GiB");
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
        assert_eq!(percent(1, 0), "-");
        assert!(quits(b"xq"));
        assert!(quits(&[3]));
        assert!(!quits(b"x"));
    }
}
