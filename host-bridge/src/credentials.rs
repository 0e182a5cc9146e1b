//! The agents' renewable credentials and API keys, on their way from the host into boxes.
//!
//! - Credential files (Claude's `.credentials.json`, Codex's and OpenCode's `auth.json`)
//!   are copied into the box (`agentbox resync`): per box for docker, into the
//!   organization's credentials volume for Daytona. The box image links each agent's own
//!   path to `~/.agentbox-creds/<agent>/`. Nothing the box writes there is ever copied back.
//! - API keys reach an agent session only, and only the ones the user named in the host
//!   config `agents.forwardEnv`: through a 0600 file the session reads and deletes, never
//!   argv, logs or the environment of the box's daemon and services.

use std::path::Path;

use anyhow::Context;

/// Each agent's credential file: (agent, file under the host's home, file name in the
/// agent's credentials directory in the box).
pub const FILES: [(&str, &str, &str); 3] = [
    ("claude", ".claude/.credentials.json", ".credentials.json"),
    ("codex", ".codex/auth.json", "auth.json"),
    ("opencode", ".local/share/opencode/auth.json", "auth.json"),
];

/// The directory of an agent's credentials in the box.
pub fn box_dir(agent: &str) -> String {
    format!("/home/agent/.agentbox-creds/{agent}")
}

/// A credential file read on the host.
pub struct Credential {
    /// Which agent.
    pub agent: &'static str,
    /// Its file name in [`box_dir`].
    pub file: &'static str,
    /// Contents.
    pub bytes: Vec<u8>,
}

/// The credential files present under `host_home`.
pub fn read(host_home: &Path) -> anyhow::Result<Vec<Credential>> {
    let mut found = Vec::new();
    for (agent, host_file, file) in FILES {
        let path = host_home.join(host_file);
        match std::fs::read(&path) {
            Ok(bytes) => found.push(Credential { agent, file, bytes }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }
    Ok(found)
}

/// Where `read` looks, for messages.
pub fn looked_for() -> String {
    FILES
        .iter()
        .map(|(_, f, _)| format!("~/{f}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// This machine's environment variables a `local` box inherits: the ones a shell and a
/// terminal program need to behave (identity, locale, terminal, time zone, temp dir,
/// XDG directories, logging) and agentbox's own tuning knobs. Everything else — tokens
/// (`GITHUB_TOKEN`, `NPM_TOKEN`, `AWS_*`), `SSH_AUTH_SOCK`, `DATABASE_URL`, whatever a
/// user keeps in their shell — stays out: an allowlist, because a denylist cannot know
/// every secret's name. API keys reach an agent session only through `agents.forwardEnv`.
pub fn box_inherits_var(name: &str) -> bool {
    const EXACT: [&str; 26] = [
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LANGUAGE",
        "TERM",
        "COLORTERM",
        "TZ",
        "TMPDIR",
        "NO_COLOR",
        "EDITOR",
        "VISUAL",
        "PAGER",
        "XDG_CONFIG_HOME",
        "XDG_DATA_HOME",
        "XDG_CACHE_HOME",
        "XDG_STATE_HOME",
        "RUST_LOG",
        "RUST_BACKTRACE",
        "AGENTBOX_LOG_MAX_BYTES",
        "AGENTBOX_MAX_UPLOAD_BYTES",
        "AGENTBOX_PROXY_HOLD_MS",
        "AGENTBOX_PROXY_THREADS",
        "AGENTBOX_PROXY_HEADER_TIMEOUT_MS",
        "AGENTBOX_BRIDGE_LEASE_MS",
    ];
    EXACT.contains(&name) || (name.len() > 3 && name.starts_with("LC_") && valid_var_name(name))
}

/// Whether `name` can be an environment variable name.
pub fn valid_var_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The variables of the comma-separated list `names` that this host's environment has,
/// with their values.
pub fn forwarded(names: &str) -> Vec<(String, String)> {
    names
        .split(',')
        .map(str::trim)
        .filter(|n| valid_var_name(n))
        .filter_map(|n| std::env::var(n).ok().map(|v| (n.to_string(), v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_box_inherits_only_the_allowlist() {
        for name in ["HOME", "LANG", "LC_ALL", "TERM", "AGENTBOX_PROXY_THREADS"] {
            assert!(box_inherits_var(name), "{name}");
        }
        for name in [
            "GITHUB_TOKEN",
            "GH_TOKEN",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "NPM_TOKEN",
            "SSH_AUTH_SOCK",
            "DATABASE_URL",
            "ANTHROPIC_API_KEY",
            "AGENTBOX_BRIDGE_TOKEN",
            "AGENTBOX_HOME",
            "LC_",
            "home",
        ] {
            assert!(!box_inherits_var(name), "{name}");
        }
    }

    #[test]
    fn secret_vars_and_names() {
        for key in [
            "ANTHROPIC_API_KEY",
            "OPENAI_API_KEY",
            "CLAUDE_CODE_OAUTH_TOKEN",
        ] {
            assert!(!box_inherits_var(key), "{key}");
        }
        // PATH is the box's own (its shims first), built from this one, not inherited.
        assert!(!box_inherits_var("PATH"));
        assert!(valid_var_name("OPENAI_API_KEY"));
        assert!(!valid_var_name("A-B"));
        assert!(!valid_var_name("1A"));
        assert!(!valid_var_name(""));
    }

    #[test]
    fn reads_only_the_credential_files_there_are() {
        let home = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(home.path().join(".codex")).expect("mkdir");
        std::fs::write(home.path().join(".codex/auth.json"), "{}").expect("write");
        let found = read(home.path()).expect("read");
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].agent, found[0].file), ("codex", "auth.json"));
    }
}
