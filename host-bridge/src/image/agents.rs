//! The coding agents an image can carry, and their packages.
//!
//! Each agent ships on npm as a native binary in a per-platform package. The host fetches
//! it with `npm pack` (the user's npm settings: registry, proxy, auth) into a cache, and
//! the tarball goes into the build context: builders that cannot reach the registry over
//! HTTPS (containers on some machines) still get the agent, the build is reproducible,
//! and an unchanged tarball keeps the image's checksum. The Dockerfile falls back to the
//! registry itself when the context has no tarball.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// An agent that `AGENTS=` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Agent {
    /// Anthropic's Claude Code.
    Claude,
    /// OpenAI's Codex CLI.
    Codex,
    /// OpenCode.
    Opencode,
}

/// Every agent, in the order images list them.
pub const ALL: [Agent; 3] = [Agent::Claude, Agent::Codex, Agent::Opencode];

impl Agent {
    /// Its name in `AGENTS=`, in session names and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Claude => "claude",
            Self::Codex => "codex",
            Self::Opencode => "opencode",
        }
    }

    /// The agent called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        ALL.into_iter().find(|a| a.name() == name)
    }

    /// The command line of a session running this agent with the user's `args`, with
    /// what reports its state (Codex takes its `notify` program as a flag; Claude's hooks
    /// and the OpenCode plugin are in the image). With `resume`, a shell picks the agent's
    /// way to continue its last conversation when it has one on disk, else starts it
    /// afresh; the user's arguments pass as `"$@"`, never spliced into the script.
    pub fn session_argv(self, args: &[String], resume: bool) -> Vec<String> {
        let mut base: Vec<String> = vec![self.name().to_string()];
        if self == Self::Codex {
            base.push("-c".into());
            base.push(r#"notify=["agentbox-ctl","agent-state","--from","codex"]"#.into());
        }
        if !resume {
            base.extend(args.iter().cloned());
            return base;
        }
        let (history, continue_args) = match self {
            // Claude keeps a directory per working directory, named by it with every
            // character but letters and digits made `-`; `--continue` looks only there.
            Self::Claude => (
                "$HOME/.claude/projects/$(pwd | sed 's/[^A-Za-z0-9]/-/g')",
                "--continue",
            ),
            Self::Codex => ("$HOME/.codex/sessions", "resume --last"),
            Self::Opencode => ("$HOME/.local/share/opencode/storage/session", "--continue"),
        };
        let command = base
            .iter()
            .map(|w| crate::shell::quote(w))
            .collect::<Vec<_>>()
            .join(" ");
        let script = format!(
            "if [ -n \"$(ls -A \"{history}\" 2>/dev/null)\" ]; then exec {command} {continue_args} \"$@\"; else exec {command} \"$@\"; fi"
        );
        let mut argv = vec!["sh".to_string(), "-c".into(), script, self.name().into()];
        argv.extend(args.iter().cloned());
        argv
    }

    /// The npm package holding the native binary for `arch` (`x64` or `arm64`), and the
    /// version to ask for (`None`: the latest).
    fn package(self, arch: &str, version: Option<&str>) -> String {
        match self {
            Self::Claude => format!(
                "@anthropic-ai/claude-code-linux-{arch}@{}",
                version.unwrap_or("latest")
            ),
            // Codex publishes each platform as a version of `@openai/codex` itself.
            Self::Codex => format!("@openai/codex@{}-linux-{arch}", version.unwrap_or("latest")),
            Self::Opencode => format!("opencode-linux-{arch}@{}", version.unwrap_or("latest")),
        }
    }

    /// The npm package whose version names the release (for Codex, the platform package
    /// has no `latest` of its own).
    fn release_package(self, arch: &str) -> String {
        match self {
            Self::Codex => "@openai/codex".into(),
            other => other
                .package(arch, None)
                .trim_end_matches("@latest")
                .to_string(),
        }
    }
}

/// Parses an `AGENTS` list: names separated by commas, or `none`.
pub fn parse_list(text: &str) -> Result<Vec<Agent>, String> {
    let text = text.trim();
    if text == "none" || text.is_empty() {
        return Ok(Vec::new());
    }
    let mut agents = Vec::new();
    for name in text.split(',').map(str::trim) {
        let agent = Agent::from_name(name).ok_or_else(|| {
            format!("unknown agent `{name}`: the agents are claude, codex and opencode (or `none`)")
        })?;
        if !agents.contains(&agent) {
            agents.push(agent);
        }
    }
    agents.sort();
    Ok(agents)
}

/// The list in `AGENTS=` form.
pub fn list_text(agents: &[Agent]) -> String {
    if agents.is_empty() {
        return "none".into();
    }
    agents
        .iter()
        .map(|a| a.name())
        .collect::<Vec<_>>()
        .join(",")
}

/// npm's name for the image's CPU architecture (the host's: Docker builds for it, and
/// Daytona runs x86-64).
pub fn npm_arch() -> &'static str {
    if std::env::consts::ARCH == "aarch64" {
        "arm64"
    } else {
        "x64"
    }
}

/// The package cache: `AGENTBOX_AGENT_CACHE`, else `~/.cache/agentbox/agents`.
pub fn cache_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("AGENTBOX_AGENT_CACHE").filter(|v| !v.is_empty()) {
        return Ok(dir.into());
    }
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cache"),
    };
    Ok(base.join("agentbox").join("agents"))
}

/// The file name a package's tarball gets in the cache.
fn cached_name(agent: Agent, arch: &str, version: &str) -> String {
    format!("{}-linux-{arch}-{version}.tgz", agent.name())
}

/// The newest tarball of `agent` already in `cache`.
fn newest_cached(cache: &Path, agent: Agent, arch: &str) -> Option<PathBuf> {
    let prefix = format!("{}-linux-{arch}-", agent.name());
    std::fs::read_dir(cache)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with(&prefix) && name.ends_with(".tgz")
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max()
        .map(|(_, p)| p)
}

/// Runs `npm` with `args` in `cwd`; its trimmed stdout, or an error with its stderr.
pub(super) fn npm(args: &[&str], cwd: &Path) -> anyhow::Result<String> {
    let out = Command::new("npm")
        .args(args)
        .current_dir(cwd)
        .stdin(std::process::Stdio::null())
        .output()
        .context("cannot run npm (install Node.js and npm to fetch agent packages)")?;
    if !out.status.success() {
        bail!(
            "`npm {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The tarball of `agent`'s latest release, fetched into the cache unless it is there.
/// Without the registry, the newest cached tarball, with a warning; with neither, an
/// error that says what to do.
pub fn fetch(agent: Agent) -> anyhow::Result<PathBuf> {
    let cache = cache_dir()?;
    std::fs::create_dir_all(&cache)
        .with_context(|| format!("cannot create {}", cache.display()))?;
    let arch = npm_arch();
    let latest = npm(&["view", &agent.release_package(arch), "version"], &cache);
    let version = match latest {
        Ok(v)
            if !v.is_empty()
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-+".contains(c)) =>
        {
            v
        }
        other => {
            let why = other
                .err()
                .map_or_else(|| "no version".to_string(), |e| e.to_string());
            return newest_cached(&cache, agent, arch).ok_or_else(|| {
                anyhow::anyhow!(
                    "cannot fetch the {} package ({why}); build without it with `--agents none` or fix npm's access to the registry",
                    agent.name()
                )
            }).inspect(|p| {
                eprintln!("warning: npm cannot reach the registry ({why}); using {}", p.display());
            });
        }
    };
    let path = cache.join(cached_name(agent, arch, &version));
    if path.is_file() {
        return Ok(path);
    }
    crate::transfer::progress::step(&format!("fetching {} {version} (npm pack)", agent.name()));
    let staging = tempfile::tempdir_in(&cache)?;
    let file = npm(
        &[
            "pack",
            "--silent",
            "--pack-destination",
            &staging.path().display().to_string(),
            &agent.package(arch, Some(&version)),
        ],
        &cache,
    )?;
    let packed = staging.path().join(file.lines().last().unwrap_or_default());
    if !packed.is_file() {
        bail!("npm pack did not leave the {} tarball", agent.name());
    }
    std::fs::rename(&packed, &path)?;
    Ok(path)
}

/// The cached tarball that `prepare` would use now, without the network (the newest one).
pub fn cached(agent: Agent) -> Option<PathBuf> {
    newest_cached(&cache_dir().ok()?, agent, npm_arch())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse() {
        assert_eq!(parse_list("none"), Ok(vec![]));
        assert_eq!(
            parse_list("opencode, claude,claude"),
            Ok(vec![Agent::Claude, Agent::Opencode])
        );
        assert!(parse_list("claude,emacs")
            .err()
            .is_some_and(|e| e.contains("unknown agent `emacs`")));
        assert_eq!(list_text(&[Agent::Claude, Agent::Codex]), "claude,codex");
        assert_eq!(list_text(&[]), "none");
    }

    #[test]
    fn sessions_carry_the_state_hooks_and_resume_without_splicing() {
        let args = vec!["--model".to_string(), "it's $(x)".to_string()];
        assert_eq!(
            Agent::Claude.session_argv(&args, false),
            ["claude", "--model", "it's $(x)"]
        );
        let codex = Agent::Codex.session_argv(&[], false);
        assert_eq!(codex[..2], ["codex", "-c"]);
        assert!(codex[2].contains(r#""--from","codex""#));
        let resumed = Agent::Codex.session_argv(&args, true);
        assert_eq!(resumed[..2], ["sh", "-c"]);
        assert!(resumed[2].contains("exec codex -c 'notify=["));
        assert!(resumed[2].contains("resume --last \"$@\""));
        assert_eq!(resumed[3..], ["codex", "--model", "it's $(x)"]);
    }

    #[test]
    fn package_names_follow_npm() {
        assert_eq!(
            Agent::Claude.package("x64", Some("2.1.0")),
            "@anthropic-ai/claude-code-linux-x64@2.1.0"
        );
        assert_eq!(
            Agent::Codex.package("arm64", Some("0.9.0")),
            "@openai/codex@0.9.0-linux-arm64"
        );
        assert_eq!(Agent::Codex.release_package("x64"), "@openai/codex");
        assert_eq!(Agent::Opencode.release_package("x64"), "opencode-linux-x64");
    }
}
