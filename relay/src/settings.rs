//! The relay's settings, from `AGENTBOX_*` variables with the documented defaults.

use std::net::IpAddr;
use std::path::PathBuf;

/// Everything the relay reads from its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `AGENTBOX_WEB_PORT` [8080]; 0 picks a free port (written to `relay.json`).
    pub web_port: u16,
    /// `AGENTBOX_BRIDGE_PORT` [8788]; 0 picks a free port (written to `relay.json`).
    pub bridge_port: u16,
    /// `AGENTBOX_BIND_ADDR` [0.0.0.0]: where both listeners bind.
    pub bind_addr: IpAddr,
    /// `AGENTBOX_RUN_DIR` [/run/agentbox].
    pub run_dir: PathBuf,
    /// `AGENTBOX_BRIDGE_LEASE_MS` [30000]: how long the host holds a request before it is
    /// delivered again (progress renews it).
    pub lease_ms: u64,
    /// `AGENTBOX_STATE_DIR` [/var/lib/agentbox]: the request journal.
    pub state_dir: PathBuf,
    /// `AGENTBOX_WORKSPACE` [/workspace].
    pub workspace: PathBuf,
    /// `AGENTBOX_MAX_UPLOAD_BYTES` [1 GiB]: the cap on one upload.
    pub max_upload_bytes: u64,
    /// `AGENTBOX_PROXY_HOLD_MS` [30000]: how long the WebProxy holds a request for a
    /// service that is still starting.
    pub proxy_hold_ms: u64,
    /// `AGENTBOX_PROXY_HEADER_TIMEOUT_MS` [10000]: a client must send its request head
    /// within this time (slowloris guard).
    pub proxy_header_timeout_ms: u64,
    /// `AGENTBOX_PROXY_THREADS` [1]: threads serving the WebProxy. One serves ~20,000
    /// small requests a second on a 2-core VM, more than twice what two did there: the
    /// box's cores belong to its services and the agent.
    pub proxy_threads: usize,
    /// `AGENTBOX_EXPOSE_OUTSIDE=1`: relay loopback-bound exposed services from the box's
    /// outside address (set by the daytona provider).
    pub expose_outside: bool,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn parsed<T: std::str::FromStr>(name: &str, default: T, what: &str) -> Result<T, String> {
    match var(name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| format!("{name}={v:?} is not {what}")),
    }
}

impl Settings {
    /// Reads the environment; a malformed value is an error naming the variable.
    pub fn from_env() -> Result<Self, String> {
        let web_port: u16 = parsed("AGENTBOX_WEB_PORT", 8080, "a port number (0-65535)")?;
        Ok(Self {
            web_port,
            bridge_port: parsed("AGENTBOX_BRIDGE_PORT", 8788, "a port number (0-65535)")?,
            bind_addr: parsed(
                "AGENTBOX_BIND_ADDR",
                IpAddr::from([0, 0, 0, 0]),
                "an IP address",
            )?,
            run_dir: var("AGENTBOX_RUN_DIR").map_or_else(|| "/run/agentbox".into(), PathBuf::from),
            lease_ms: parsed(
                "AGENTBOX_BRIDGE_LEASE_MS",
                30_000,
                "a number of milliseconds",
            )?,
            state_dir: var("AGENTBOX_STATE_DIR")
                .map_or_else(|| "/var/lib/agentbox".into(), PathBuf::from),
            workspace: var("AGENTBOX_WORKSPACE").map_or_else(|| "/workspace".into(), PathBuf::from),
            max_upload_bytes: parsed("AGENTBOX_MAX_UPLOAD_BYTES", 1 << 30, "a byte count")?,
            proxy_hold_ms: parsed("AGENTBOX_PROXY_HOLD_MS", 30_000, "a number of milliseconds")?,
            proxy_header_timeout_ms: parsed(
                "AGENTBOX_PROXY_HEADER_TIMEOUT_MS",
                10_000,
                "a number of milliseconds",
            )?,
            proxy_threads: match parsed("AGENTBOX_PROXY_THREADS", 1, "a number of threads")? {
                n @ 1..=64 => n,
                n => {
                    return Err(format!(
                        "AGENTBOX_PROXY_THREADS={n} is not between 1 and 64"
                    ))
                }
            },
            expose_outside: parsed::<u8>("AGENTBOX_EXPOSE_OUTSIDE", 0, "0 or 1")? == 1,
        })
    }
}
