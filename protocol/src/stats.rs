//! The relay's stats API (`GET /v1/stats`, behind the bridge token): one sample of what
//! the box uses — CPU, memory, the workspace's disk and its heaviest processes — measured
//! inside the box by the relay, from the box's own cgroup and `/proc`.
//!
//! CPU needs two readings: the relay keeps the previous one and reports the use between
//! it and now (`window_ms`). Its first answer (or one after a long pause) reads twice,
//! half a second apart, so every answer has a window.
//!
//! The box is untrusted: the host reads an answer with [`BoxStats::from_json`], which caps
//! its size ([`STATS_CAP`]), the number of processes ([`MAX_PROCESSES`]), the lengths of
//! strings, and refuses numbers no box can have. Strings (a user, a command line) are the
//! box's words and are escaped when shown.

use serde::{Deserialize, Serialize};

use crate::EpochMillis;

/// The route.
pub const STATS_PATH: &str = "/v1/stats";
/// The most bytes of a stats answer the host reads.
pub const STATS_CAP: usize = 64 << 10;
/// The most processes an answer may list.
pub const MAX_PROCESSES: usize = 32;
/// How many processes the relay lists when the request does not say (`?processes=N`).
pub const DEFAULT_PROCESSES: usize = 10;
/// The most characters of a command line (longer ones are cut by the relay).
pub const MAX_COMMAND_CHARS: usize = 200;
/// The most characters of a user name.
pub const MAX_USER_CHARS: usize = 32;
/// The largest byte count taken as real (1 EiB).
const MAX_BYTES: u64 = 1 << 60;
/// The most cores a box is taken to have.
const MAX_CORES: f64 = 65_536.0;
/// The longest window between two readings (a day).
const MAX_WINDOW_MS: u64 = 86_400_000;

/// Where the numbers come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatsSource {
    /// The box's cgroup (v2: `cpu.stat`, `cpu.max`, `memory.current`, `memory.max`).
    CgroupV2,
    /// The box's cgroup, v1 controllers (`cpuacct.usage`, `cpu.cfs_quota_us`,
    /// `memory.usage_in_bytes`, `memory.limit_in_bytes`).
    CgroupV1,
    /// The box's own processes from `/proc` (a local box, whose cgroup is the host's):
    /// CPU and memory are those processes' sums, the limits the machine's.
    ProcessTree,
}

/// One sample of a box.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoxStats {
    /// When the relay took the sample (the box's clock).
    pub at_ms: EpochMillis,
    /// The time between the two readings the CPU figures cover.
    pub window_ms: u64,
    /// Where the numbers come from.
    pub source: StatsSource,
    /// CPU over the window.
    pub cpu: CpuStats,
    /// Memory now.
    pub memory: MemoryStats,
    /// The filesystem of the workspace now.
    pub disk: DiskStats,
    /// How many processes the box has (all of them, not only those listed).
    pub process_count: u32,
    /// The heaviest processes, by CPU then memory, heaviest first.
    pub processes: Vec<ProcessStats>,
}

/// CPU over the sample's window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuStats {
    /// Cores busy on average (1.0: one core all the time).
    pub used_cores: f64,
    /// The cores the box may use: its cgroup's quota, else the cores it can run on.
    pub limit_cores: f64,
    /// `used_cores` as a percentage of `limit_cores`.
    pub percent: f64,
}

/// Memory now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryStats {
    /// Bytes in use, as `docker stats` counts them (the cgroup's use less its inactive
    /// file cache), or the processes' resident sizes summed.
    pub used_bytes: u64,
    /// The cgroup's limit, else the machine's memory.
    pub limit_bytes: u64,
}

/// The workspace's filesystem now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskStats {
    /// Bytes used.
    pub used_bytes: u64,
    /// Its size.
    pub size_bytes: u64,
}

/// One process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessStats {
    /// Its pid in the box.
    pub pid: u32,
    /// Its (real) user's name in the box, or the uid.
    pub user: String,
    /// CPU over the window; 100 is one core.
    pub cpu_percent: f64,
    /// Resident memory.
    pub rss_bytes: u64,
    /// Its command line (arguments joined by spaces), cut to [`MAX_COMMAND_CHARS`].
    pub command: String,
}

/// Why a stats answer was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StatsError {
    /// More than [`STATS_CAP`] bytes.
    #[error("the stats answer is larger than {STATS_CAP} bytes")]
    TooLarge,
    /// Not the JSON of [`BoxStats`] (serde's words; they may quote the box's).
    #[error("the stats answer is not what the host expects: {0}")]
    Json(String),
    /// A value no box can have.
    #[error("the stats answer has an impossible value: {0}")]
    Invalid(String),
}

/// `text` cut to its first `max` characters.
pub fn clip(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), StatsError> {
    if ok {
        Ok(())
    } else {
        Err(StatsError::Invalid(what()))
    }
}

fn check_bytes(n: u64, what: &str) -> Result<(), StatsError> {
    check(n <= MAX_BYTES, || format!("{what} is {n}, over 1 EiB"))
}

fn check_number(x: f64, max: f64, what: &str) -> Result<(), StatsError> {
    check(x.is_finite() && (0.0..=max).contains(&x), || {
        // A huge number in short.
        let x = if x.abs() < 1e9 {
            x.to_string()
        } else {
            format!("{x:e}")
        };
        format!("{what} is {x}, not between 0 and {max}")
    })
}

impl BoxStats {
    /// Parses and checks an answer of the relay's: at most [`STATS_CAP`] bytes, then
    /// [`BoxStats::validate`].
    pub fn from_json(bytes: &[u8]) -> Result<Self, StatsError> {
        if bytes.len() > STATS_CAP {
            return Err(StatsError::TooLarge);
        }
        let stats: Self =
            serde_json::from_slice(bytes).map_err(|e| StatsError::Json(e.to_string()))?;
        stats.validate()?;
        Ok(stats)
    }

    /// Refuses what no box can report: more than [`MAX_PROCESSES`] processes, a string
    /// past its length, a number not finite, negative or absurd.
    pub fn validate(&self) -> Result<(), StatsError> {
        check(self.window_ms <= MAX_WINDOW_MS, || {
            format!("window_ms is {}, over a day", self.window_ms)
        })?;
        check_number(self.cpu.used_cores, MAX_CORES, "cpu.used_cores")?;
        check_number(self.cpu.limit_cores, MAX_CORES, "cpu.limit_cores")?;
        check(self.cpu.limit_cores > 0.0, || "cpu.limit_cores is 0".into())?;
        check_number(self.cpu.percent, 100.0 * MAX_CORES, "cpu.percent")?;
        check_bytes(self.memory.used_bytes, "memory.used_bytes")?;
        check_bytes(self.memory.limit_bytes, "memory.limit_bytes")?;
        check_bytes(self.disk.used_bytes, "disk.used_bytes")?;
        check_bytes(self.disk.size_bytes, "disk.size_bytes")?;
        check(self.processes.len() <= MAX_PROCESSES, || {
            format!(
                "{} processes listed, more than {MAX_PROCESSES}",
                self.processes.len()
            )
        })?;
        check(self.processes.len() <= self.process_count as usize, || {
            format!(
                "{} processes listed of a count of {}",
                self.processes.len(),
                self.process_count
            )
        })?;
        for p in &self.processes {
            check(p.pid > 0, || "a process has pid 0".into())?;
            check_number(p.cpu_percent, 100.0 * MAX_CORES, "a process's cpu_percent")?;
            check_bytes(p.rss_bytes, "a process's rss_bytes")?;
            check(p.user.chars().count() <= MAX_USER_CHARS, || {
                format!(
                    "process {}'s user is over {MAX_USER_CHARS} characters",
                    p.pid
                )
            })?;
            check(p.command.chars().count() <= MAX_COMMAND_CHARS, || {
                format!(
                    "process {}'s command is over {MAX_COMMAND_CHARS} characters",
                    p.pid
                )
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BoxStats {
        BoxStats {
            at_ms: 1,
            window_ms: 500,
            source: StatsSource::CgroupV2,
            cpu: CpuStats {
                used_cores: 1.0,
                limit_cores: 2.0,
                percent: 50.0,
            },
            memory: MemoryStats {
                used_bytes: 1 << 20,
                limit_bytes: 1 << 30,
            },
            disk: DiskStats {
                used_bytes: 1 << 30,
                size_bytes: 1 << 34,
            },
            process_count: 3,
            processes: vec![ProcessStats {
                pid: 7,
                user: "agent".into(),
                cpu_percent: 99.5,
                rss_bytes: 4096,
                command: "sh -c while :; do :; done".into(),
            }],
        }
    }

    #[test]
    fn a_sample_round_trips() {
        let json = serde_json::to_vec(&sample()).expect("json");
        assert_eq!(BoxStats::from_json(&json), Ok(sample()));
    }

    #[test]
    fn impossible_answers_are_refused() {
        let mut s = sample();
        s.cpu.percent = f64::NAN;
        assert!(s.validate().is_err());
        let mut s = sample();
        s.cpu.limit_cores = 0.0;
        assert!(s.validate().is_err());
        let mut s = sample();
        s.memory.used_bytes = u64::MAX;
        assert!(s.validate().is_err());
        let mut s = sample();
        s.processes = vec![s.processes[0].clone(); MAX_PROCESSES + 1];
        s.process_count = 1000;
        assert!(s.validate().is_err());
        let mut s = sample();
        s.process_count = 0;
        assert!(s.validate().is_err());
        let mut s = sample();
        s.processes[0].command = "x".repeat(MAX_COMMAND_CHARS + 1);
        assert!(s.validate().is_err());
        let mut s = sample();
        s.processes[0].cpu_percent = -1.0;
        assert!(s.validate().is_err());
        assert_eq!(
            BoxStats::from_json(&vec![b' '; STATS_CAP + 1]),
            Err(StatsError::TooLarge)
        );
        assert!(matches!(
            BoxStats::from_json(b"{\"at_ms\":\"\x1b[2J\"}"),
            Err(StatsError::Json(_))
        ));
    }

    #[test]
    fn the_json_shape_is_kept() {
        let json = serde_json::to_string(&sample()).expect("json");
        assert_eq!(
            json,
            r#"{"at_ms":1,"window_ms":500,"source":"cgroup_v2","cpu":{"used_cores":1.0,"limit_cores":2.0,"percent":50.0},"memory":{"used_bytes":1048576,"limit_bytes":1073741824},"disk":{"used_bytes":1073741824,"size_bytes":17179869184},"process_count":3,"processes":[{"pid":7,"user":"agent","cpu_percent":99.5,"rss_bytes":4096,"command":"sh -c while :; do :; done"}]}"#
        );
    }

    #[test]
    fn clip_counts_characters() {
        assert_eq!(clip("héllo", 2), "hé");
        assert_eq!(clip("ab", 5), "ab");
    }
}
