//! The browser of an image made with `prepare --browser` (or `browser` in `--agents`):
//! Debian's Chromium, a virtual display, a window manager and noVNC come from the Debian
//! mirror inside the build; Playwright and its MCP server are npm packages, fetched here
//! on the host with `npm pack` (as the agents are: builders that cannot reach the registry
//! over HTTPS still get them) into the agents' cache, and put into the build context.
//!
//! Their versions are pinned: the newest Playwright MCP server whose Playwright still runs
//! on Debian bookworm's Node 18, and the Playwright it was released with. An image without
//! the browser is built from exactly the Dockerfile and context it was before the browser
//! existed: [`strip`] removes the `# browser:begin` … `# browser:end` blocks.

use std::path::PathBuf;

use anyhow::{bail, Context};

use super::agents;

/// The box script that starts the screen's parts (the ctl daemon's built-in units).
pub const SCREEN_SCRIPT: &str = include_str!("../../../box/screen");
/// The box script that unpacks the packages, links Chromium for Playwright and
/// configures the agents' MCP server.
pub const SETUP_SCRIPT: &str = include_str!("../../../box/browser-setup");

/// The Playwright MCP server's version.
const MCP_VERSION: &str = "0.0.76";
/// The Playwright it depends on (exactly this version).
const PLAYWRIGHT_VERSION: &str = "1.61.0-alpha-1781023400000";

/// The npm packages baked, with their versions: (package name, version).
const PACKAGES: [(&str, &str); 3] = [
    ("@playwright/mcp", MCP_VERSION),
    ("playwright", PLAYWRIGHT_VERSION),
    ("playwright-core", PLAYWRIGHT_VERSION),
];

/// The word in an `--agents` list (or `box.agents`) that asks for the browser.
pub const AGENT_WORD: &str = "browser";

/// One npm package of the browser, cached on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// Its npm name (where it goes under `node_modules/`).
    pub name: &'static str,
    /// The tarball.
    pub path: PathBuf,
}

impl Package {
    /// Its file name in the build context's `browser/` (and the cache).
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// The cache file of a package: `browser-<name, `/` and `@` made `-`>-<version>.tgz`.
fn cached_name(name: &str, version: &str) -> String {
    let flat: String = name
        .trim_start_matches('@')
        .chars()
        .map(|c| if c == '/' { '-' } else { c })
        .collect();
    format!("browser-{flat}-{version}.tgz")
}

/// Splits `browser` out of an agents list: the list without it, and whether it was there.
pub fn split_agents(list: &str) -> (String, bool) {
    let mut found = false;
    let rest: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|w| {
            let is = *w == AGENT_WORD;
            found |= is;
            !is
        })
        .collect();
    let rest = rest.join(",");
    if found && rest.is_empty() {
        return ("none".into(), true);
    }
    (rest, found)
}

/// The packages, fetched into the cache unless they are there.
pub fn fetch() -> anyhow::Result<Vec<Package>> {
    let cache = agents::cache_dir()?;
    std::fs::create_dir_all(&cache)
        .with_context(|| format!("cannot create {}", cache.display()))?;
    let mut found = Vec::new();
    for (name, version) in PACKAGES {
        let path = cache.join(cached_name(name, version));
        if !path.is_file() {
            crate::transfer::progress::step(&format!("fetching {name} {version} (npm pack)"));
            let staging = tempfile::tempdir_in(&cache)?;
            let file = agents::npm(
                &[
                    "pack",
                    "--silent",
                    "--pack-destination",
                    &staging.path().display().to_string(),
                    &format!("{name}@{version}"),
                ],
                &cache,
            )
            .with_context(|| {
                format!("cannot fetch {name} for `--browser`; fix npm's access to the registry or build without the browser")
            })?;
            let packed = staging.path().join(file.lines().last().unwrap_or_default());
            if !packed.is_file() {
                bail!("npm pack did not leave the {name} tarball");
            }
            std::fs::rename(&packed, &path)?;
        }
        found.push(Package { name, path });
    }
    Ok(found)
}

/// The packages as cached, without the network (`None` when one is missing).
pub fn cached() -> Option<Vec<Package>> {
    let cache = agents::cache_dir().ok()?;
    PACKAGES
        .iter()
        .map(|(name, version)| {
            let path = cache.join(cached_name(name, version));
            path.is_file().then_some(Package { name, path })
        })
        .collect()
}

/// `browser/packages` of the build context: `NAME FILE` per line.
pub fn listing(packages: &[Package]) -> String {
    packages.iter().fold(String::new(), |mut s, p| {
        s.push_str(p.name);
        s.push(' ');
        s.push_str(&p.file_name());
        s.push('\n');
        s
    })
}

/// The Dockerfile without its browser blocks: each `\n# browser:begin` … `# browser:end\n`
/// goes (with the blank line before it), leaving the text as it was before they existed.
pub fn strip(dockerfile: &str) -> String {
    const BEGIN: &str = "\n# browser:begin";
    const END: &str = "# browser:end\n";
    let mut out = String::with_capacity(dockerfile.len());
    let mut rest = dockerfile;
    while let Some(start) = rest.find(BEGIN) {
        out.push_str(&rest[..start]);
        match rest[start..].find(END) {
            Some(end) => rest = &rest[start + end + END.len()..],
            None => {
                rest = "";
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browser_is_taken_out_of_an_agents_list() {
        assert_eq!(split_agents("claude,browser"), ("claude".into(), true));
        assert_eq!(split_agents("browser"), ("none".into(), true));
        assert_eq!(
            split_agents("claude, codex"),
            ("claude,codex".into(), false)
        );
        assert_eq!(split_agents("none"), ("none".into(), false));
    }

    #[test]
    fn the_blocks_go_and_nothing_else() {
        let text = "a\n\n# browser:begin x\nRUN b\n# browser:end\n\nc\n\n# browser:begin\nd\n# browser:end\n\ne\n";
        assert_eq!(strip(text), "a\n\nc\n\ne\n");
        assert_eq!(strip("plain\n"), "plain\n");
    }

    #[test]
    fn cache_names_are_flat() {
        assert_eq!(
            cached_name("@playwright/mcp", "0.0.76"),
            "browser-playwright-mcp-0.0.76.tgz"
        );
    }
}
