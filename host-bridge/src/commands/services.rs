//! `agentbox logs` (a unit's log, or every unit's merged, from `agentbox-ctl logs --json`
//! run in the box through its relay — the same on every provider) and `agentbox services`
//! (each service's state, port and address on this machine). Everything the box says is
//! parsed, then escaped before it reaches the terminal.

use std::io::Write;
use std::process::ExitCode;

use agentbox_protocol::ctl::{LogLine, StatusReport, UnitKind};
use agentbox_protocol::exec::ExecRequest;
use anyhow::{bail, Context as _};

use super::context::{ensure_running, relay_of, Ctx};
use crate::cli::{LogsArgs, ServicesArgs};
use crate::provider::AnyBox;
use crate::relay_exec::{Ended, Stream};
use crate::text::shown;

/// The longest log line taken from the box (longer ones are cut there).
const MAX_LINE: usize = 1 << 20;

/// How many of each unit's latest lines `--since` looks through (the box sends a tail in
/// one frame: not the whole rotated log).
const SINCE_TAIL: u32 = 50_000;

/// The most of the box's stderr kept for an error message.
const MAX_STDERR: usize = 64 << 10;

/// `agentbox logs`.
pub fn logs(ctx: &Ctx, args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let record = ctx.resolve(args.target.as_deref())?;
    // A joined box (a teammate's) has no provider here: its logs come through `/v1/logs`.
    let b = if record.is_joined() {
        let invite = super::joined::invite(&record)?;
        super::joined::need(
            &record,
            &invite,
            agentbox_protocol::share::Scope::Logs,
            "reading its logs",
        )?;
        None
    } else {
        let b = AnyBox::open(&record)?;
        ensure_running(&b, &record.name)?;
        Some(b)
    };
    let stopped = || b.as_ref().is_some_and(|b| !b.running());
    let relay = if b.is_none() {
        super::joined::relay(&record)?
    } else {
        relay_of(&record)?
    };
    // A local box's relay runs on this machine: the ctl it runs is ours, by path.
    let ctl = match &b {
        Some(AnyBox::Local(_)) => crate::provider::local::box_binaries()?
            .0
            .display()
            .to_string(),
        _ => "agentbox-ctl".to_string(),
    };
    let tail = args.tail.unwrap_or(if args.since.is_some() {
        SINCE_TAIL
    } else {
        200
    });
    let mut argv = vec![
        ctl,
        "logs".into(),
        "--json".into(),
        "-n".into(),
        tail.to_string(),
    ];
    if args.follow {
        argv.push("-f".into());
    }
    if let Some(since) = args.since {
        argv.push("--since-ms".into());
        argv.push(since.as_millis().to_string());
    }
    if let Some(unit) = &args.unit {
        argv.push("--".into());
        argv.push(unit.clone());
    }
    let query = agentbox_protocol::share::LogsQuery {
        tail,
        follow: args.follow,
        since_ms: args
            .since
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        unit: args.unit.clone(),
    };
    let request = ExecRequest::new(argv);
    let json = args.json;
    let mut pending: Vec<u8> = Vec::new();
    let mut stderr: Vec<u8> = Vec::new();
    let mut output = |stream: Stream, bytes: &[u8]| -> std::io::Result<()> {
        match stream {
            Stream::Stderr => {
                let room = MAX_STDERR.saturating_sub(stderr.len());
                stderr.extend_from_slice(&bytes[..bytes.len().min(room)]);
                Ok(())
            }
            Stream::Stdout => {
                pending.extend_from_slice(bytes);
                let mut out = std::io::stdout().lock();
                while let Some(end) = pending.iter().position(|&c| c == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    print_line(&mut out, &line[..end], json)?;
                }
                if pending.len() > MAX_LINE {
                    print_line(&mut out, &pending, json)?;
                    pending.clear();
                }
                out.flush()
            }
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let ended = runtime.block_on(async {
        tokio::select! {
            r = async {
                if b.is_none() {
                    crate::relay_exec::run_logs(&relay, &query, &mut output).await
                } else {
                    crate::relay_exec::run(&relay, &request, None, &mut output).await
                }
            } => Some(r),
            _ = tokio::signal::ctrl_c() => None,
        }
    });
    let ended = match ended {
        // Ctrl-C: the forward of the log ends here (the box ends its side).
        None => return Ok(ExitCode::SUCCESS),
        Some(Ok(e)) => e,
        // The connection went with the box: a follow ends there.
        Some(Err(_)) if args.follow && stopped() => {
            eprintln!("agentbox: box `{}` stopped", record.name);
            return Ok(ExitCode::SUCCESS);
        }
        Some(Err(e)) => return Err(e),
    };
    match ended {
        Ended::Exited(e) if e.status_code() == 0 => Ok(ExitCode::SUCCESS),
        Ended::Exited(_) => {
            let why = String::from_utf8_lossy(&stderr);
            let why = why.trim().trim_start_matches("agentbox-ctl: ");
            if args.follow && stopped() {
                eprintln!("agentbox: box `{}` stopped", record.name);
                return Ok(ExitCode::SUCCESS);
            }
            bail!(
                "box `{}` cannot show the log: {} (`agentbox services {}` lists its units)",
                record.name,
                shown(why),
                record.name
            );
        }
        Ended::Refused { message, .. } => bail!(
            "box `{}` cannot show the log: {message} (is its agentbox-ctl missing?)",
            record.name
        ),
    }
}

/// Prints one line of `agentbox-ctl logs --json`, parsed and escaped.
fn print_line(out: &mut impl Write, raw: &[u8], json: bool) -> std::io::Result<()> {
    let Ok(line) = serde_json::from_slice::<LogLine>(raw) else {
        return writeln!(
            out,
            "(the box sent a line that is not a log line: {})",
            shown(&crate::text::capped(&String::from_utf8_lossy(raw), 200))
        );
    };
    if json {
        // JSON escapes every control character itself.
        return writeln!(out, "{}", serde_json::to_string(&line).unwrap_or_default());
    }
    writeln!(
        out,
        "{} {} {} {}",
        clock(line.ts_ms),
        shown(&line.unit),
        line.stream.tag(),
        shown(&line.line)
    )
}

/// `YYYY-MM-DD HH:MM:SS.mmm` (UTC) of the box's epoch-millisecond time.
fn clock(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let (y, m, d) = civil(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60,
        ms % 1000
    )
}

/// The calendar date of `days` since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// One service as `agentbox services --json` shows it.
#[derive(serde::Serialize)]
struct ServiceRow {
    name: String,
    state: String,
    ready: bool,
    port: Option<u16>,
    url: Option<String>,
}

/// `agentbox services`.
pub fn services(ctx: &Ctx, args: &ServicesArgs) -> anyhow::Result<ExitCode> {
    let record = ctx.resolve(args.target.as_deref())?;
    let b = AnyBox::open(&record)?;
    ensure_running(&b, &record.name)?;
    let out = b.ctl(&["status", "--json"])?;
    if !out.status.success() {
        bail!(
            "box `{}` did not report its services: {}",
            record.name,
            shown(String::from_utf8_lossy(&out.stderr).trim())
        );
    }
    let report: StatusReport = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "box `{}` answered `status` with something else",
            record.name
        )
    })?;
    let mut rows = Vec::new();
    for u in report
        .units
        .into_iter()
        .filter(|u| u.kind == UnitKind::Service)
    {
        let port = u.expose.as_ref().map(|e| e.port);
        let url = match (&b, port) {
            (_, None) => None,
            (AnyBox::Docker(d), Some(p)) => Some(super::url::web_url_of(
                &d.url(None)?,
                &record.name,
                p,
                &u.name,
            )?),
            (_, Some(p)) => Some(super::url::address(&b, &record.name, Some(p), None)?),
        };
        rows.push(ServiceRow {
            name: u.name,
            state: u.state.as_str().to_string(),
            ready: u.ready,
            port,
            url,
        });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        eprintln!(
            "box `{}` runs no services (agentbox.yaml `services:`)",
            record.name
        );
        return Ok(ExitCode::SUCCESS);
    }
    let cells: Vec<[String; 4]> = rows
        .iter()
        .map(|r| {
            [
                shown(&r.name),
                r.state.clone(),
                r.port.map_or_else(|| "-".into(), |p| p.to_string()),
                r.url.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let header = ["NAME", "STATE", "PORT", "URL"];
    let width = |i: usize| {
        cells
            .iter()
            .map(|c| c[i].chars().count())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0)
    };
    let (w0, w1, w2) = (width(0), width(1), width(2));
    println!(
        "{:w0$}  {:w1$}  {:w2$}  {}",
        header[0], header[1], header[2], header[3]
    );
    for c in &cells {
        println!("{:w0$}  {:w1$}  {:w2$}  {}", c[0], c[1], c[2], c[3]);
    }
    Ok(ExitCode::SUCCESS)
}
