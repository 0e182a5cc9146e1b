//! `agentbox-relay`: the in-box relay.
//!
//! What exists today is its configuration from the environment contract ([`Settings`]).
//! The WebProxy on `AGENTBOX_WEB_PORT` and the bridge API on `AGENTBOX_BRIDGE_PORT` are
//! built by the relay and bridge issues; until then the binary refuses to run rather than
//! pretend to serve.

use std::path::PathBuf;

/// The relay's settings, from `AGENTBOX_*` variables with the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `AGENTBOX_WEB_PORT` [8080].
    pub web_port: u16,
    /// `AGENTBOX_BRIDGE_PORT` [8788].
    pub bridge_port: u16,
    /// `AGENTBOX_RUN_DIR` [/run/agentbox].
    pub run_dir: PathBuf,
}

impl Settings {
    /// Reads the environment; a malformed port is an error naming the variable.
    pub fn from_env() -> Result<Self, String> {
        let port = |name: &str, default: u16| match std::env::var(name) {
            Err(_) => Ok(default),
            Ok(v) if v.is_empty() => Ok(default),
            Ok(v) => v
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{name}={v:?} is not a port number (1-65535)")),
        };
        Ok(Self {
            web_port: port("AGENTBOX_WEB_PORT", 8080)?,
            bridge_port: port("AGENTBOX_BRIDGE_PORT", 8788)?,
            run_dir: std::env::var_os("AGENTBOX_RUN_DIR")
                .filter(|v| !v.is_empty())
                .map_or_else(|| "/run/agentbox".into(), PathBuf::from),
        })
    }
}
