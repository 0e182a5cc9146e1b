//! The box's processes from `/proc`: each one's CPU ticks, start, resident memory, real
//! user and command line, and the machine's memory (`/proc/meminfo`) for a box that has
//! no limit of its own.

use std::collections::HashMap;
use std::path::Path;

use agentbox_protocol::stats::{clip, MAX_COMMAND_CHARS};

/// Clock ticks a second in `/proc/PID/stat` (`USER_HZ`, 100 on every Linux the boxes
/// run).
pub const TICKS_PER_SECOND: u64 = 100;

/// What `/proc/PID/stat` says of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    /// Its command name (`comm`).
    pub comm: String,
    /// CPU used so far, user and system, in ticks.
    pub ticks: u64,
    /// When it started, in ticks after boot (with the pid, it names the process).
    pub start: u64,
}

/// One process of the box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    /// Its pid.
    pub pid: u32,
    /// Its real uid.
    pub uid: u32,
    /// Its `stat`.
    pub stat: ProcStat,
    /// Resident memory in bytes (`VmRSS`; 0 for a kernel thread).
    pub rss_bytes: u64,
    /// Its command line, cut to [`MAX_COMMAND_CHARS`].
    pub command: String,
}

/// Parses `/proc/PID/stat`. The name is in parentheses and may hold spaces and
/// parentheses itself, so the fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    // Field 3 (state) is the first after the name: field N is rest[N - 3].
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let number = |n: usize| -> Option<u64> { rest.get(n - 3)?.parse().ok() };
    Some(ProcStat {
        comm,
        ticks: number(14)?.saturating_add(number(15)?),
        start: number(22)?,
    })
}

/// The real uid and `VmRSS` (bytes; 0 when absent) of `/proc/PID/status`.
pub fn parse_status(text: &str) -> Option<(u32, u64)> {
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
    };
    let uid = value("Uid:")?.parse().ok()?;
    let rss_kb: u64 = value("VmRSS:").and_then(|v| v.parse().ok()).unwrap_or(0);
    Some((uid, rss_kb.saturating_mul(1024)))
}

/// User names by uid from an `/etc/passwd`; lines that do not parse are skipped.
pub fn parse_passwd(text: &str) -> HashMap<u32, String> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let uid = fields.nth(1)?.parse().ok()?;
            Some((uid, name.to_string()))
        })
        .collect()
}

/// A `/proc/PID/cmdline` (arguments ending in NUL) as one line, arguments joined by
/// spaces; a kernel thread's (empty) as `[comm]`. Cut to [`MAX_COMMAND_CHARS`].
pub fn command_line(cmdline: &[u8], comm: &str) -> String {
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let line = if args.is_empty() {
        format!("[{comm}]")
    } else {
        args.join(" ")
    };
    clip(&line, MAX_COMMAND_CHARS)
}

/// `MemTotal` of a `/proc/meminfo`, in bytes.
pub fn parse_mem_total(text: &str) -> Option<u64> {
    let kb: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb.saturating_mul(1024))
}

/// The processes under `proc_root` (normally `/proc`) that `keep` accepts by pid. A
/// process that ends while it is read is left out.
pub fn scan(proc_root: &Path, keep: &dyn Fn(u32) -> bool) -> Vec<Proc> {
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| keep(*pid))
        .filter_map(|pid| {
            let dir = proc_root.join(pid.to_string());
            let stat = parse_stat(&std::fs::read_to_string(dir.join("stat")).ok()?)?;
            let (uid, rss_bytes) =
                parse_status(&std::fs::read_to_string(dir.join("status")).ok()?)?;
            let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
            let command = command_line(&cmdline, &stat.comm);
            Some(Proc {
                pid,
                uid,
                stat,
                rss_bytes,
                command,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (a (weird) name) R 1 4242 4242 0 -1 4194304 120 0 0 0 250 50 0 0 20 0 1 0 987654 8192000 700 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 3 0 0 0 0 0\n";

    #[test]
    fn stat_is_counted_from_the_last_parenthesis() {
        assert_eq!(
            parse_stat(STAT),
            Some(ProcStat {
                comm: "a (weird) name".into(),
                ticks: 300,
                start: 987_654,
            })
        );
        assert_eq!(parse_stat("12 (x) R 1"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn status_gives_the_real_uid_and_rss() {
        let status = "Name:\tsh\nUid:\t1000\t0\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\nVmRSS:\t    2048 kB\n";
        assert_eq!(parse_status(status), Some((1000, 2048 * 1024)));
        assert_eq!(
            parse_status("Name:\tkthreadd\nUid:\t0\t0\t0\t0\n"),
            Some((0, 0))
        );
        assert_eq!(parse_status("Name:\tx\n"), None);
    }

    #[test]
    fn passwd_and_meminfo_are_read() {
        let users = parse_passwd(
            "root:x:0:0:root:/root:/bin/bash\nagent:x:1000:1000::/home/agent:/bin/bash\nbroken\n",
        );
        assert_eq!(users.get(&0).map(String::as_str), Some("root"));
        assert_eq!(users.get(&1000).map(String::as_str), Some("agent"));
        assert_eq!(users.len(), 2);
        assert_eq!(
            parse_mem_total("MemTotal:       16314328 kB\nMemFree: 1 kB\n"),
            Some(16_314_328 * 1024)
        );
    }

    #[test]
    fn command_lines_are_joined_and_cut() {
        assert_eq!(
            command_line(b"sh\0-c\0while :; do :; done\0", "sh"),
            "sh -c while :; do :; done"
        );
        assert_eq!(command_line(b"", "kworker/0:1"), "[kworker/0:1]");
        let long = vec![b'a'; 5000];
        assert_eq!(command_line(&long, "a").chars().count(), MAX_COMMAND_CHARS);
        assert_eq!(command_line(b"\xff\xfe\0", "x"), "\u{fffd}\u{fffd}");
    }

    #[test]
    fn a_fixture_proc_tree_is_scanned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("4242");
        std::fs::create_dir_all(&p).expect("mkdir");
        std::fs::write(p.join("stat"), STAT).expect("stat");
        std::fs::write(
            p.join("status"),
            "Uid:\t1000\t1000\t1000\t1000\nVmRSS:\t10 kB\n",
        )
        .expect("status");
        std::fs::write(p.join("cmdline"), b"sleep\x0099\x00").expect("cmdline");
        std::fs::create_dir_all(dir.path().join("self")).expect("not a pid");
        std::fs::create_dir_all(dir.path().join("77")).expect("a process that ended");
        let procs = scan(dir.path(), &|_| true);
        assert_eq!(procs.len(), 1, "{procs:?}");
        assert_eq!(procs[0].pid, 4242);
        assert_eq!(procs[0].uid, 1000);
        assert_eq!(procs[0].rss_bytes, 10240);
        assert_eq!(procs[0].command, "sleep 99");
        assert!(scan(dir.path(), &|pid| pid != 4242).is_empty());
    }
}
