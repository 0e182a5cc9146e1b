//! The ledger of unit process groups: `run/units.pids`, one `PGID START_TIME` line per
//! group this daemon started.
//!
//! A daemon killed with SIGKILL cannot stop its units, and they are process groups of
//! their own (no `PR_SET_PDEATHSIG` without `pre_exec`, which is `unsafe`): the relay
//! and the services would live on holding their ports, and the next daemon's relay
//! would never bind. So every spawned group is appended here, and a daemon that starts
//! (holding the lock, before it spawns anything) SIGKILLs the groups a previous daemon
//! left. A line names a group only while its leader is the process recorded (same pid,
//! same start time in `/proc/PID/stat`) or, with the leader gone, while the group still
//! has members (Linux hands out no pid that is still some group's id, so those are the
//! leader's own descendants). Lines of groups that ended are dropped as the file grows.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// Where this daemon records its groups; unset (nothing recorded) outside a daemon.
static LEDGER: OnceLock<PathBuf> = OnceLock::new();
/// Serialises appends and compaction (units and run_once checks spawn from tasks).
static WRITING: Mutex<()> = Mutex::new(());
/// Past this many lines, a `record` first drops the lines of groups that ended.
const COMPACT_AFTER: usize = 64;

/// The ledger file in `run_dir`.
pub fn ledger_path(run_dir: &Path) -> PathBuf {
    run_dir.join("units.pids")
}

/// Makes [`record`] write to `path` from now on (the daemon calls this once, after
/// [`reap`]).
pub fn init(path: PathBuf) {
    let _ = LEDGER.set(path);
}

/// The start time of `pid` (field 22 of `/proc/PID/stat`, clock ticks since boot).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which ends at the last ')': state is field 3.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the group of a ledger line is still the one recorded.
fn still_ours(pgid: u32, started: u64) -> bool {
    match start_time(pgid) {
        Some(t) => t == started,
        None => signal(pgid, None),
    }
}

/// `killpg(pgid, sig)`; `false` when the group does not exist. Never group 0 or 1.
fn signal(pgid: u32, sig: Option<Signal>) -> bool {
    match i32::try_from(pgid) {
        Ok(raw) if raw > 1 => !matches!(killpg(Pid::from_raw(raw), sig), Err(Errno::ESRCH)),
        _ => false,
    }
}

fn parse(text: &str) -> Vec<(u32, u64)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let pgid = fields.next()?.parse().ok()?;
            let started = fields.next()?.parse().ok()?;
            fields.next().is_none().then_some((pgid, started))
        })
        .collect()
}

/// Notes the new group `pgid` (its leader was just spawned) in the ledger.
pub fn record(pgid: u32) {
    let Some(path) = LEDGER.get() else {
        return;
    };
    let Some(started) = start_time(pgid) else {
        return; // already gone: nothing to clean up later
    };
    let _guard = WRITING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut lines = parse(&std::fs::read_to_string(path).unwrap_or_default());
    lines.push((pgid, started));
    let result = if lines.len() > COMPACT_AFTER {
        lines.retain(|&(g, s)| still_ours(g, s));
        write_all(path, &lines)
    } else {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| writeln!(f, "{pgid} {started}"))
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, path = %path.display(), "cannot record a unit's process group");
    }
}

fn write_all(path: &Path, lines: &[(u32, u64)]) -> std::io::Result<()> {
    let tmp = path.with_extension("pids.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    for (g, s) in lines {
        writeln!(file, "{g} {s}")?;
    }
    drop(file);
    std::fs::rename(&tmp, path)
}

/// SIGKILLs every group in the ledger at `path` that is still the one recorded, then
/// empties the ledger. Only for a daemon holding the lock, before it spawns: the groups
/// are then a dead daemon's. Returns how many groups were killed.
pub fn reap(path: &Path) -> usize {
    let Ok(text) = std::fs::read_to_string(path) else {
        return 0;
    };
    let mut killed = 0;
    for (pgid, started) in parse(&text) {
        if still_ours(pgid, started) && signal(pgid, Some(Signal::SIGKILL)) {
            killed += 1;
        }
    }
    if let Err(e) = std::fs::write(path, "") {
        tracing::warn!(error = %e, path = %path.display(), "cannot empty the unit ledger");
    }
    killed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_lines_parse_and_junk_is_skipped() {
        assert_eq!(
            parse("12 345\nnot a line\n7 x\n 8 9 \n"),
            vec![(12, 345), (8, 9)]
        );
    }

    #[test]
    fn our_own_start_time_is_read() {
        let me = std::process::id();
        let t = start_time(me).expect("own start time");
        assert!(still_ours(me, t));
        assert!(!still_ours(me, t + 1));
    }

    #[test]
    fn a_stale_or_foreign_line_kills_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = ledger_path(dir.path());
        let me = std::process::id();
        let t = start_time(me).expect("start time");
        // Our own pid with another start time: a reused pid, never signalled.
        std::fs::write(&path, format!("{me} {}\n999999999 1\n", t + 1)).expect("write");
        assert_eq!(reap(&path), 0);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "");
    }
}
