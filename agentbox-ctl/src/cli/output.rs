//! How answers are printed: the status table, `wait-ready`'s verdict, log lines, unit lines.

use agentbox_protocol::ctl::{LogLine, StatusReport, UnitStatus, WaitReadyReport};

pub(super) fn print_json<T: serde::Serialize>(value: &T) {
    let text =
        serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    println!("{text}");
}

pub(super) fn log_line(l: &LogLine) -> String {
    format!("{} {} {}", clock(l.ts_ms), l.stream.tag(), l.line)
}

/// `HH:MM:SS.mmm` (UTC) of an epoch-millisecond timestamp.
pub(super) fn clock(ms: u64) -> String {
    let s = ms / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        (s / 3600) % 24,
        (s / 60) % 60,
        s % 60,
        ms % 1000
    )
}

pub(super) fn ago(ms: u64) -> String {
    let secs = agentbox_protocol::now_millis().saturating_sub(ms) / 1000;
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86400),
    }
}

pub(super) fn unit_line(u: &UnitStatus) -> String {
    let pid = u.pid.map_or(String::new(), |p| format!(" (pid {p})"));
    let detail = u
        .detail
        .as_ref()
        .map_or(String::new(), |d| format!(" — {d}"));
    format!("{}: {}{pid}{detail}", u.name, u.state)
}

pub(super) fn print_status(r: &StatusReport) {
    if let Some(e) = &r.daemon.config_error {
        println!(
            "CONFIG ERROR (no units running; fix the file, then `agentbox-ctl reload`):\n{e}\n"
        );
    }
    if r.units.is_empty() {
        println!("no services or tasks configured ({})", r.daemon.config_path);
        return;
    }
    println!(
        "{:<20} {:<8} {:<9} {:<8} {:<8} DETAIL",
        "NAME", "KIND", "STATE", "PID", "RESTARTS"
    );
    for u in &r.units {
        let kind = match u.kind {
            agentbox_protocol::ctl::UnitKind::Service => "service",
            agentbox_protocol::ctl::UnitKind::Task => "task",
        };
        let mut detail = u.detail.clone().unwrap_or_default();
        if let Some(e) = &u.expose {
            detail = format!(
                "{}port {}{}",
                if detail.is_empty() {
                    String::new()
                } else {
                    format!("{detail}; ")
                },
                e.port,
                if e.default { " (default)" } else { "" }
            );
        }
        println!(
            "{:<20} {:<8} {:<9} {:<8} {:<8} {}",
            u.name,
            kind,
            u.state.as_str(),
            u.pid.map_or("-".into(), |p| p.to_string()),
            u.restarts,
            detail
        );
    }
}

pub(super) fn print_wait(r: &WaitReadyReport) {
    if r.ready {
        println!("ready");
        return;
    }
    println!("not ready");
    for p in &r.failed {
        println!("  failed: {}: {}", p.name, p.reason);
    }
    for p in &r.timed_out {
        println!("  timed out: {}: {}", p.name, p.reason);
    }
}
