//! `agentbox-ctl logs [UNIT…]`: the log of one unit, or of several (every unit when none
//! is named) merged by time; `--since` keeps the lines of the last so many milliseconds
//! by the box's clock; `--json` prints one [`LogLine`] a line (what the host's `agentbox
//! logs` reads). Each unit has a connection of its own; following ends when every
//! unit's stream ended (the daemon stopping ends them all).

use std::io::Write;
use std::process::ExitCode;
use std::sync::mpsc;

use agentbox_protocol::ctl::{CtlRequest, CtlResponse, LogLine};

use super::output::log_line;
use crate::client::{self, ClientError};

/// What `logs` prints and how.
pub struct LogsArgs {
    /// The units (none: every unit the daemon knows).
    pub names: Vec<String>,
    /// The latest lines of each unit to print first.
    pub tail: u32,
    /// Keep printing new lines.
    pub follow: bool,
    /// One JSON object a line.
    pub json: bool,
    /// Only lines from the last this many milliseconds.
    pub since_ms: Option<u64>,
}

/// One unit's stream, as its reader thread hands it over.
enum Batch {
    Lines(Vec<LogLine>),
    End,
    Failed(ClientError),
}

/// Runs `logs`.
pub fn logs(socket: &std::path::Path, args: &LogsArgs) -> Result<ExitCode, ClientError> {
    let names = if args.names.is_empty() {
        match client::call(socket, CtlRequest::Status)? {
            CtlResponse::Status(report) => report.units.into_iter().map(|u| u.name).collect(),
            other => return Err(ClientError::unexpected(&other)),
        }
    } else {
        args.names.clone()
    };
    let cutoff = args.since_ms.map(|ms| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        now.saturating_sub(ms)
    });
    let (tx, rx) = mpsc::channel::<(usize, Batch)>();
    let mut clients = Vec::new();
    for name in &names {
        // Opened here, so that a unknown unit is an error before anything is printed.
        clients.push(client::Client::request(
            socket,
            CtlRequest::Logs {
                name: name.clone(),
                tail: args.tail,
                follow: args.follow,
            },
        )?);
    }
    for (i, mut c) in clients.into_iter().enumerate() {
        let tx = tx.clone();
        std::thread::spawn(move || loop {
            let batch = match c.response() {
                Ok(CtlResponse::LogLines(lines)) => Batch::Lines(lines),
                Ok(CtlResponse::End) | Err(ClientError::NoAnswer) => Batch::End,
                Ok(other) => Batch::Failed(ClientError::unexpected(&other)),
                Err(e) => Batch::Failed(e),
            };
            let last = !matches!(batch, Batch::Lines(_));
            if tx.send((i, batch)).is_err() || last {
                return;
            }
        });
    }
    drop(tx);
    let mut out = std::io::stdout().lock();
    let mut print = |lines: &mut Vec<LogLine>| -> bool {
        lines.sort_by_key(|l| l.ts_ms);
        for l in lines.iter().filter(|l| cutoff.is_none_or(|c| l.ts_ms >= c)) {
            let text = if args.json {
                serde_json::to_string(l).unwrap_or_default()
            } else {
                log_line(l)
            };
            if writeln!(out, "{text}").is_err() {
                return false; // stdout closed (e.g. `| head`)
            }
        }
        out.flush().is_ok()
    };
    // The first batch of every unit (its tail) is merged by time, then lines go out as
    // they come.
    let mut first: Vec<LogLine> = Vec::new();
    let mut waiting: Vec<bool> = vec![true; names.len()];
    let mut open = names.len();
    let mut failure = None;
    for (i, batch) in rx {
        match batch {
            Batch::Lines(mut lines) => {
                if waiting[i] {
                    waiting[i] = false;
                    first.append(&mut lines);
                    if waiting.iter().all(|w| !w) && !print(&mut first) {
                        return Ok(ExitCode::SUCCESS);
                    }
                } else if !print(&mut lines) {
                    return Ok(ExitCode::SUCCESS);
                }
            }
            Batch::End | Batch::Failed(_) => {
                if let Batch::Failed(e) = batch {
                    failure = Some(e);
                }
                open -= 1;
                if waiting[i] {
                    waiting[i] = false;
                    if waiting.iter().all(|w| !w) && !print(&mut first) {
                        return Ok(ExitCode::SUCCESS);
                    }
                }
                if open == 0 {
                    break;
                }
            }
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(ExitCode::SUCCESS),
    }
}
