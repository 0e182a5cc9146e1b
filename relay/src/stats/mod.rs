//! The stats API (`GET /v1/stats[?processes=N]`, contract in
//! [`agentbox_protocol::stats`]): CPU, memory, the workspace's disk and the heaviest
//! processes of this box, measured here.
//!
//! Where from: a box in a container reads its own cgroup ([`cgroup`]; v2, else v1) and
//! lists every process of its `/proc` ([`procs`]). A local box
//! (`AGENTBOX_SHARED_PORTS=1`, which its host sets) shares the host's cgroup, so it counts
//! its own processes instead — those whose environment names this box's
//! `AGENTBOX_RUN_DIR` — and the machine's cores and memory as its limits.
//!
//! CPU needs two readings: the relay keeps the previous one (shared by every caller) and
//! answers with the use since it. With none, or one older than [`STALE`], it reads twice
//! [`FIRST_WINDOW`] apart; callers closer than [`MIN_WINDOW`] wait for that much window.

pub mod cgroup;
pub mod procs;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentbox_protocol::stats::{
    clip, BoxStats, CpuStats, DiskStats, MemoryStats, ProcessStats, StatsSource, DEFAULT_PROCESSES,
    MAX_PROCESSES, MAX_USER_CHARS, STATS_PATH,
};
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use tokio::sync::Mutex;

use crate::http::{internal, ApiError};
use procs::{Proc, TICKS_PER_SECOND};

/// A previous reading older than this is not used: the answer reads twice instead.
pub const STALE: Duration = Duration::from_secs(30);
/// The window of a first answer.
pub const FIRST_WINDOW: Duration = Duration::from_millis(500);
/// The shortest window an answer covers.
pub const MIN_WINDOW: Duration = Duration::from_millis(250);

/// Whose numbers these are.
#[derive(Debug, Clone)]
enum Scope {
    /// The cgroup mounted at this root, every process of `/proc`.
    Cgroup(PathBuf),
    /// The processes whose `AGENTBOX_RUN_DIR` is this (a local box).
    Tree(String),
}

/// One reading of everything.
struct Reading {
    at: Instant,
    cgroup: Option<cgroup::Reading>,
    procs: Vec<Proc>,
}

/// The sampler: where to read, and the previous reading.
pub struct Sampler {
    scope: Scope,
    workspace: PathBuf,
    previous: Mutex<Option<Reading>>,
}

/// `?processes=N`: how many processes to list (default
/// [`DEFAULT_PROCESSES`], at most [`MAX_PROCESSES`]).
#[derive(Debug, serde::Deserialize)]
pub struct StatsQuery {
    processes: Option<usize>,
}

/// The `/v1/stats` route (the token check is the caller's), for a box whose workspace is
/// `workspace`.
pub fn routes(workspace: PathBuf) -> Router {
    let shared = std::env::var("AGENTBOX_SHARED_PORTS").is_ok_and(|v| v == "1");
    let run_dir = std::env::var("AGENTBOX_RUN_DIR")
        .ok()
        .filter(|d| !d.is_empty());
    let scope = match run_dir {
        Some(dir) if shared => Scope::Tree(dir),
        _ => Scope::Cgroup("/sys/fs/cgroup".into()),
    };
    let sampler = Sampler {
        scope,
        workspace,
        previous: Mutex::new(None),
    };
    Router::new()
        .route(STATS_PATH, get(stats))
        .with_state(Arc::new(sampler))
}

async fn stats(
    State(sampler): State<Arc<Sampler>>,
    Query(query): Query<StatsQuery>,
) -> Result<Json<BoxStats>, ApiError> {
    let n = query
        .processes
        .unwrap_or(DEFAULT_PROCESSES)
        .min(MAX_PROCESSES);
    sampler.sample(n).await.map(Json)
}

impl Sampler {
    async fn read(&self) -> Result<Reading, ApiError> {
        let scope = self.scope.clone();
        tokio::task::spawn_blocking(move || read(&scope))
            .await
            .map_err(internal)
    }

    /// One answer listing `n` processes.
    async fn sample(&self, n: usize) -> Result<BoxStats, ApiError> {
        let mut previous = self.previous.lock().await;
        let age = previous.as_ref().map(|p| p.at.elapsed());
        let before = match (previous.take(), age) {
            (Some(p), Some(age)) if age <= STALE => {
                if let Some(wait) = MIN_WINDOW.checked_sub(age) {
                    tokio::time::sleep(wait).await;
                }
                p
            }
            _ => {
                let first = self.read().await?;
                tokio::time::sleep(FIRST_WINDOW).await;
                first
            }
        };
        let now = self.read().await?;
        let workspace = self.workspace.clone();
        let disk = tokio::task::spawn_blocking(move || disk(&workspace))
            .await
            .map_err(internal)?;
        let stats = combine(&before, &now, disk, n, &machine());
        *previous = Some(now);
        Ok(stats)
    }
}

fn read(scope: &Scope) -> Reading {
    let at = Instant::now();
    match scope {
        Scope::Cgroup(root) => Reading {
            at,
            cgroup: cgroup::read_at(root),
            procs: procs::scan(Path::new("/proc"), &|_| true),
        },
        Scope::Tree(run_dir) => {
            let me = std::process::id();
            let keep = |pid: u32| {
                pid == me
                    || agentbox_protocol::listeners::env_of(pid, "AGENTBOX_RUN_DIR")
                        .is_some_and(|d| d == *run_dir)
            };
            Reading {
                at,
                cgroup: None,
                procs: procs::scan(Path::new("/proc"), &keep),
            }
        }
    }
}

/// The machine: its cores (those this process may run on) and memory, and user names.
struct Machine {
    cores: f64,
    memory: Option<u64>,
    users: HashMap<u32, String>,
}

fn machine() -> Machine {
    Machine {
        cores: std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64),
        memory: std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| procs::parse_mem_total(&m)),
        users: std::fs::read_to_string("/etc/passwd")
            .map(|p| procs::parse_passwd(&p))
            .unwrap_or_default(),
    }
}

/// The workspace filesystem's use and size (zeros when it cannot be read).
fn disk(workspace: &Path) -> DiskStats {
    match nix::sys::statvfs::statvfs(workspace) {
        Ok(v) => {
            let unit = v.fragment_size();
            let size = v.blocks().saturating_mul(unit);
            let free = v.blocks_free().saturating_mul(unit);
            DiskStats {
                used_bytes: size.saturating_sub(free),
                size_bytes: size,
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the workspace's filesystem");
            DiskStats {
                used_bytes: 0,
                size_bytes: 0,
            }
        }
    }
}

/// The answer from two readings.
fn combine(
    before: &Reading,
    now: &Reading,
    disk: DiskStats,
    n: usize,
    machine: &Machine,
) -> BoxStats {
    let window = now.at.saturating_duration_since(before.at);
    let seconds = window.as_secs_f64().max(0.001);
    let earlier: HashMap<(u32, u64), u64> = before
        .procs
        .iter()
        .map(|p| ((p.pid, p.stat.start), p.stat.ticks))
        .collect();
    // A process new since the last reading used all its time within the window.
    let used_ticks = |p: &Proc| {
        p.stat
            .ticks
            .saturating_sub(earlier.get(&(p.pid, p.stat.start)).copied().unwrap_or(0))
    };
    let percent_of = |ticks: u64| ticks as f64 / TICKS_PER_SECOND as f64 / seconds * 100.0;
    let (source, used_cores, cpu_limit, used_memory, memory_limit) =
        match (&before.cgroup, &now.cgroup) {
            (Some(b), Some(c)) => (
                match c.version {
                    cgroup::Version::V2 => StatsSource::CgroupV2,
                    cgroup::Version::V1 => StatsSource::CgroupV1,
                },
                c.usage_usec.saturating_sub(b.usage_usec) as f64 / 1e6 / seconds,
                c.cpu_limit,
                c.memory_used,
                c.memory_limit,
            ),
            _ => (
                StatsSource::ProcessTree,
                now.procs.iter().map(used_ticks).sum::<u64>() as f64
                    / TICKS_PER_SECOND as f64
                    / seconds,
                None,
                now.procs.iter().map(|p| p.rss_bytes).sum(),
                None,
            ),
        };
    let limit_cores = cpu_limit.unwrap_or(machine.cores).clamp(0.01, 65_536.0);
    let used_cores = used_cores.clamp(0.0, 65_536.0);
    let limit_bytes = match (memory_limit, machine.memory) {
        (Some(l), Some(m)) => l.min(m),
        (l, m) => l.or(m).unwrap_or(0),
    };
    let mut listed: Vec<ProcessStats> = now
        .procs
        .iter()
        .map(|p| ProcessStats {
            pid: p.pid,
            user: clip(
                &machine
                    .users
                    .get(&p.uid)
                    .cloned()
                    .unwrap_or_else(|| p.uid.to_string()),
                MAX_USER_CHARS,
            ),
            cpu_percent: percent_of(used_ticks(p)).min(6_553_600.0),
            rss_bytes: p.rss_bytes,
            command: p.command.clone(),
        })
        .collect();
    listed.sort_by(|a, b| {
        b.cpu_percent
            .total_cmp(&a.cpu_percent)
            .then(b.rss_bytes.cmp(&a.rss_bytes))
    });
    listed.truncate(n);
    BoxStats {
        at_ms: agentbox_protocol::now_millis(),
        window_ms: u64::try_from(window.as_millis()).unwrap_or(u64::MAX),
        source,
        cpu: CpuStats {
            used_cores,
            limit_cores,
            percent: (used_cores / limit_cores * 100.0).min(6_553_600.0),
        },
        memory: MemoryStats {
            used_bytes: used_memory,
            limit_bytes,
        },
        disk,
        process_count: u32::try_from(now.procs.len()).unwrap_or(u32::MAX),
        processes: listed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(pid: u32, ticks: u64, rss: u64) -> Proc {
        Proc {
            pid,
            uid: 1000,
            stat: procs::ProcStat {
                comm: "x".into(),
                ticks,
                start: 5,
            },
            rss_bytes: rss,
            command: format!("cmd {pid}"),
        }
    }

    #[test]
    fn two_readings_make_percentages_and_the_heaviest_come_first() {
        let t0 = Instant::now();
        let before = Reading {
            at: t0,
            cgroup: None,
            procs: vec![proc(1, 10, 100), proc(2, 1000, 50)],
        };
        let now = Reading {
            at: t0 + Duration::from_secs(2),
            cgroup: None,
            procs: vec![proc(1, 10, 100), proc(2, 1200, 50), proc(3, 20, 10)],
        };
        let machine = Machine {
            cores: 4.0,
            memory: Some(1 << 30),
            users: HashMap::from([(1000, "agent".to_string())]),
        };
        let disk = DiskStats {
            used_bytes: 1,
            size_bytes: 2,
        };
        let s = combine(&before, &now, disk, 2, &machine);
        assert_eq!(s.source, StatsSource::ProcessTree);
        assert_eq!(s.window_ms, 2000);
        // 200 + 20 ticks over 2 s: 1.1 cores of 4.
        assert!((s.cpu.used_cores - 1.1).abs() < 1e-9, "{s:?}");
        assert!((s.cpu.percent - 27.5).abs() < 1e-9, "{s:?}");
        assert_eq!(s.memory.used_bytes, 160);
        assert_eq!(s.memory.limit_bytes, 1 << 30);
        assert_eq!(s.process_count, 3);
        let pids: Vec<u32> = s.processes.iter().map(|p| p.pid).collect();
        assert_eq!(pids, [2, 3]);
        assert!((s.processes[0].cpu_percent - 100.0).abs() < 1e-9);
        assert_eq!(s.processes[0].user, "agent");
        s.validate().expect("a valid answer");
    }

    #[test]
    fn a_cgroup_gives_the_box_totals_and_its_limits() {
        let t0 = Instant::now();
        let reading = |at, usage| Reading {
            at,
            cgroup: Some(cgroup::Reading {
                version: cgroup::Version::V1,
                usage_usec: usage,
                memory_used: 300,
                memory_limit: Some(1000),
                cpu_limit: Some(1.5),
            }),
            procs: vec![proc(1, 0, 1)],
        };
        let machine = Machine {
            cores: 8.0,
            memory: Some(1 << 30),
            users: HashMap::new(),
        };
        let disk = DiskStats {
            used_bytes: 1,
            size_bytes: 2,
        };
        let s = combine(
            &reading(t0, 1_000_000),
            &reading(t0 + Duration::from_secs(1), 1_750_000),
            disk,
            10,
            &machine,
        );
        assert_eq!(s.source, StatsSource::CgroupV1);
        assert!((s.cpu.used_cores - 0.75).abs() < 1e-9, "{s:?}");
        assert!((s.cpu.percent - 50.0).abs() < 1e-9, "{s:?}");
        assert_eq!((s.memory.used_bytes, s.memory.limit_bytes), (300, 1000));
        assert_eq!(s.processes[0].user, "1000");
        s.validate().expect("a valid answer");
    }
}
