//! The box's own cgroup, read where the container sees it (`/sys/fs/cgroup`, which a
//! container's runtime mounts with the container's cgroup as its root): v2 (`cpu.stat`,
//! `cpu.max`, `memory.current`, `memory.max`, `memory.stat`), else the v1 controllers
//! (`cpuacct/cpuacct.usage`, `cpu/cpu.cfs_quota_us`, `memory/memory.usage_in_bytes`,
//! `memory/memory.limit_in_bytes`, `memory/memory.stat`).

use std::path::Path;

/// A v1 memory limit at or above this is "no limit" (the kernel writes a huge number).
const V1_NO_LIMIT: u64 = 1 << 60;

/// Which interface answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The unified hierarchy.
    V2,
    /// The v1 controllers.
    V1,
}

/// One reading of a cgroup.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// Which interface answered.
    pub version: Version,
    /// CPU time used since the cgroup began, in microseconds.
    pub usage_usec: u64,
    /// Memory in use less the inactive file cache (as `docker stats` counts it).
    pub memory_used: u64,
    /// The memory limit, if there is one.
    pub memory_limit: Option<u64>,
    /// The CPU quota in cores, if there is one.
    pub cpu_limit: Option<f64>,
}

/// `usage_usec` of a v2 `cpu.stat`.
pub fn parse_cpu_stat(text: &str) -> Option<u64> {
    field(text, "usage_usec")
}

/// A `KEY VALUE` line's value in a `cpu.stat` or `memory.stat`.
pub fn field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// A v2 `cpu.max` (`QUOTA PERIOD`, or `max PERIOD`) as cores; `None` without a quota.
pub fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut parts = text.split_whitespace();
    let quota: f64 = parts.next()?.parse().ok()?;
    let period: f64 = parts.next()?.parse().ok()?;
    cores(quota, period)
}

/// A v1 quota and period (`cpu.cfs_quota_us` is -1 without one) as cores.
pub fn parse_v1_quota(quota: &str, period: &str) -> Option<f64> {
    cores(quota.trim().parse().ok()?, period.trim().parse().ok()?)
}

fn cores(quota: f64, period: f64) -> Option<f64> {
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// A v2 `memory.max` (`max` without a limit).
pub fn parse_memory_max(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// A v1 `memory.limit_in_bytes` (a huge number without a limit).
pub fn parse_v1_limit(text: &str) -> Option<u64> {
    text.trim().parse().ok().filter(|n| *n < V1_NO_LIMIT)
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Reads the cgroup mounted at `root` (normally `/sys/fs/cgroup`): v2 if it has
/// `cpu.stat` and `memory.current`, else v1; `None` when neither can be read.
pub fn read_at(root: &Path) -> Option<Reading> {
    read_v2(root).or_else(|| read_v1(root))
}

fn read_v2(root: &Path) -> Option<Reading> {
    let usage_usec = parse_cpu_stat(&read(&root.join("cpu.stat"))?)?;
    let current: u64 = read(&root.join("memory.current"))?.trim().parse().ok()?;
    let inactive = read(&root.join("memory.stat"))
        .and_then(|s| field(&s, "inactive_file"))
        .unwrap_or(0);
    Some(Reading {
        version: Version::V2,
        usage_usec,
        memory_used: current.saturating_sub(inactive),
        memory_limit: read(&root.join("memory.max")).and_then(|s| parse_memory_max(&s)),
        cpu_limit: read(&root.join("cpu.max")).and_then(|s| parse_cpu_max(&s)),
    })
}

fn read_v1(root: &Path) -> Option<Reading> {
    let usage_ns: u64 = read(&root.join("cpuacct/cpuacct.usage"))?
        .trim()
        .parse()
        .ok()?;
    let usage: u64 = read(&root.join("memory/memory.usage_in_bytes"))?
        .trim()
        .parse()
        .ok()?;
    let inactive = read(&root.join("memory/memory.stat"))
        .and_then(|s| field(&s, "total_inactive_file"))
        .unwrap_or(0);
    let cpu_limit = match (
        read(&root.join("cpu/cpu.cfs_quota_us")),
        read(&root.join("cpu/cpu.cfs_period_us")),
    ) {
        (Some(q), Some(p)) => parse_v1_quota(&q, &p),
        _ => None,
    };
    Some(Reading {
        version: Version::V1,
        usage_usec: usage_ns / 1000,
        memory_used: usage.saturating_sub(inactive),
        memory_limit: read(&root.join("memory/memory.limit_in_bytes"))
            .and_then(|s| parse_v1_limit(&s)),
        cpu_limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, name: &str, text: &str) {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    #[test]
    fn v2_files_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(
            root,
            "cpu.stat",
            "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 0\n",
        );
        write(root, "cpu.max", "150000 100000\n");
        write(root, "memory.current", "104857600\n");
        write(root, "memory.max", "536870912\n");
        write(
            root,
            "memory.stat",
            "anon 52428800\nfile 41943040\ninactive_file 4194304\nactive_file 1\n",
        );
        assert_eq!(
            read_at(root),
            Some(Reading {
                version: Version::V2,
                usage_usec: 2_500_000,
                memory_used: 104_857_600 - 4_194_304,
                memory_limit: Some(536_870_912),
                cpu_limit: Some(1.5),
            })
        );
        write(root, "cpu.max", "max 100000\n");
        write(root, "memory.max", "max\n");
        let unlimited = read_at(root).expect("reading");
        assert_eq!((unlimited.cpu_limit, unlimited.memory_limit), (None, None));
    }

    #[test]
    fn v1_files_are_read_when_v2_is_absent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(root, "cpuacct/cpuacct.usage", "28175670\n");
        write(root, "cpu/cpu.cfs_quota_us", "150000\n");
        write(root, "cpu/cpu.cfs_period_us", "100000\n");
        write(root, "memory/memory.usage_in_bytes", "1536000\n");
        write(root, "memory/memory.limit_in_bytes", "536870912\n");
        write(
            root,
            "memory/memory.stat",
            "cache 446464\nrss 233472\ninactive_file 8192\ntotal_inactive_file 36000\n",
        );
        assert_eq!(
            read_at(root),
            Some(Reading {
                version: Version::V1,
                usage_usec: 28_175,
                memory_used: 1_500_000,
                memory_limit: Some(536_870_912),
                cpu_limit: Some(1.5),
            })
        );
        write(root, "cpu/cpu.cfs_quota_us", "-1\n");
        write(
            root,
            "memory/memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        let unlimited = read_at(root).expect("reading");
        assert_eq!((unlimited.cpu_limit, unlimited.memory_limit), (None, None));
    }

    #[test]
    fn nothing_readable_is_none_and_garbage_is_no_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read_at(dir.path()), None);
        assert_eq!(parse_cpu_max("garbage"), None);
        assert_eq!(parse_cpu_max("0 100000"), None);
        assert_eq!(parse_memory_max("-5"), None);
        assert_eq!(parse_cpu_stat("usage_usec x\n"), None);
    }
}
