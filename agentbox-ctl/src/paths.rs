//! The in-box environment contract (DESIGN.md §2): every path the daemon and CLI use,
//! from `AGENTBOX_*` variables with the documented defaults.

use std::path::PathBuf;

/// Variables that hold secrets: never passed to services or sessions.
pub const SECRET_VARS: &[&str] = &["AGENTBOX_BRIDGE_TOKEN", "AGENTBOX_RELAY_TOKEN"];

/// Where things live in (or, for tests and the `local` provider, around) the box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// `AGENTBOX_WORKSPACE` [/workspace]: default cwd of units and sessions.
    pub workspace: PathBuf,
    /// `AGENTBOX_RUN_DIR` [/run/agentbox]: sockets, lock, tmux socket.
    pub run_dir: PathBuf,
    /// `AGENTBOX_STATE_DIR` [/var/lib/agentbox]: run_once markers.
    pub state_dir: PathBuf,
    /// `AGENTBOX_LOG_DIR` [/var/log/agentbox]: one log file per unit.
    pub log_dir: PathBuf,
    /// `AGENTBOX_CONFIG` [$AGENTBOX_WORKSPACE/agentbox.yaml].
    pub config: PathBuf,
}

impl Paths {
    /// Reads the contract from the process environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|k| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
    }

    /// Reads the contract through `lookup` (for tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<PathBuf>) -> Self {
        let workspace = lookup("AGENTBOX_WORKSPACE").unwrap_or_else(|| "/workspace".into());
        let config = lookup("AGENTBOX_CONFIG").unwrap_or_else(|| workspace.join("agentbox.yaml"));
        Self {
            run_dir: lookup("AGENTBOX_RUN_DIR").unwrap_or_else(|| "/run/agentbox".into()),
            state_dir: lookup("AGENTBOX_STATE_DIR").unwrap_or_else(|| "/var/lib/agentbox".into()),
            log_dir: lookup("AGENTBOX_LOG_DIR").unwrap_or_else(|| "/var/log/agentbox".into()),
            workspace,
            config,
        }
    }

    /// The daemon's socket.
    pub fn ctl_socket(&self) -> PathBuf {
        self.run_dir.join("ctl.sock")
    }

    /// The single-instance lock.
    pub fn lock_file(&self) -> PathBuf {
        self.run_dir.join("ctl.lock")
    }

    /// The tmux server socket for agent sessions.
    pub fn tmux_socket(&self) -> PathBuf {
        self.run_dir.join("tmux.sock")
    }

    /// The log file of `unit`.
    pub fn unit_log(&self, unit: &str) -> PathBuf {
        self.log_dir.join(format!("{unit}.log"))
    }

    /// The run_once marker of `task`.
    pub fn task_marker(&self, task: &str) -> PathBuf {
        self.state_dir.join("tasks").join(task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_contract() {
        let p = Paths::from_lookup(|_| None);
        assert_eq!(p.workspace, PathBuf::from("/workspace"));
        assert_eq!(p.config, PathBuf::from("/workspace/agentbox.yaml"));
        assert_eq!(p.ctl_socket(), PathBuf::from("/run/agentbox/ctl.sock"));
    }

    #[test]
    fn config_follows_workspace() {
        let p = Paths::from_lookup(|k| (k == "AGENTBOX_WORKSPACE").then(|| "/w".into()));
        assert_eq!(p.config, PathBuf::from("/w/agentbox.yaml"));
    }
}
