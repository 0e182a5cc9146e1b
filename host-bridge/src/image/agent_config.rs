//! The agents' static configuration from the host, baked into the image: settings,
//! instruction files, skills, commands, plugins. Never credentials: only the files and
//! directories named here are read, and credential file names are skipped even inside
//! them.

use std::path::{Path, PathBuf};

/// A file for the image, at `path` relative to the agent user's home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    /// Relative to `/home/agent`, `/`-separated.
    pub path: String,
    /// Contents.
    pub data: Vec<u8>,
    /// Unix mode bits (the executable bit is kept).
    pub mode: u32,
}

/// Where each agent keeps its static configuration (relative to the home), and which
/// entries in there are configuration.
const SOURCES: &[(&str, &[&str])] = &[
    (
        ".claude",
        &[
            "settings.json",
            "CLAUDE.md",
            "agents",
            "commands",
            "skills",
            "output-styles",
            "plugins",
        ],
    ),
    (".codex", &["config.toml", "AGENTS.md", "prompts", "skills"]),
    (
        ".config/opencode",
        &[
            "opencode.json",
            "opencode.jsonc",
            "AGENTS.md",
            "agent",
            "agents",
            "command",
            "commands",
            "mode",
            "modes",
            "plugin",
            "plugins",
            "skill",
            "skills",
            "themes",
            "tool",
            "tools",
        ],
    ),
];

/// Names never baked, wherever they are: credentials and secrets.
fn is_secret(name: &str) -> bool {
    matches!(
        name,
        ".credentials.json" | "credentials.json" | "auth.json" | ".netrc"
    ) || name.starts_with(".env")
        || Path::new(name)
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("pem") || e.eq_ignore_ascii_case("key"))
}

/// Directories never descended into: caches and version control.
fn is_skipped_dir(name: &str) -> bool {
    matches!(name, ".git" | "node_modules" | "cache" | ".cache")
}

/// The most configuration baked into an image; the rest is left out with a warning.
pub const MAX_TOTAL: u64 = 64 << 20;

/// Reads the static configuration under `home`. Symbolic links are not followed.
pub fn collect(home: &Path) -> Vec<ConfigFile> {
    let mut files = Vec::new();
    let mut total = 0u64;
    for (dir, entries) in SOURCES {
        for entry in *entries {
            let rel = format!("{dir}/{entry}");
            walk(&home.join(&rel), &rel, &mut files, &mut total);
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

fn walk(path: &Path, rel: &str, out: &mut Vec<ConfigFile>, total: &mut u64) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    let name = rel.rsplit('/').next().unwrap_or(rel);
    if meta.is_dir() {
        if is_skipped_dir(name) {
            return;
        }
        let Ok(read) = std::fs::read_dir(path) else {
            return;
        };
        let mut children: Vec<PathBuf> = read.filter_map(Result::ok).map(|e| e.path()).collect();
        children.sort();
        for child in children {
            let Some(child_name) = child.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            walk(&child, &format!("{rel}/{child_name}"), out, total);
        }
    } else if meta.is_file() && !is_secret(name) {
        if *total + meta.len() > MAX_TOTAL {
            eprintln!(
                "warning: agent configuration over {} MiB; {} is left out of the image",
                MAX_TOTAL >> 20,
                path.display()
            );
            return;
        }
        if let Ok(data) = std::fs::read(path) {
            *total += data.len() as u64;
            use std::os::unix::fs::PermissionsExt;
            let mode = if meta.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            out.push(ConfigFile {
                path: rel.to_string(),
                data,
                mode,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_configuration_and_never_credentials() {
        let home = tempfile::tempdir().expect("tempdir");
        let h = home.path();
        let write = |rel: &str, text: &str| {
            let p = h.join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        };
        write(".claude/settings.json", "{}");
        write(".claude/CLAUDE.md", "be nice");
        write(".claude/.credentials.json", "SECRET");
        write(".claude/skills/x/SKILL.md", "skill");
        write(".claude/skills/x/auth.json", "SECRET");
        write(".claude/projects/p/transcript.jsonl", "private");
        write(".claude/plugins/m/.git/config", "vcs");
        write(".codex/auth.json", "SECRET");
        write(".codex/config.toml", "model = \"x\"");
        write(".config/opencode/opencode.json", "{}");
        write(".config/opencode/plugins/p.js", "export {}");
        write(".config/opencode/plugins/.env", "SECRET");
        std::os::unix::fs::symlink("/etc/passwd", h.join(".codex/AGENTS.md")).expect("link");
        let paths: Vec<String> = collect(h).into_iter().map(|f| f.path).collect();
        assert_eq!(
            paths,
            [
                ".claude/CLAUDE.md",
                ".claude/settings.json",
                ".claude/skills/x/SKILL.md",
                ".codex/config.toml",
                ".config/opencode/opencode.json",
                ".config/opencode/plugins/p.js",
            ]
        );
    }
}
