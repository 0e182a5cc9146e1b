//! Everything a box image is built from ([`Inputs`]): `Dockerfile.box`, the shims, the box
//! binaries, the base image, the agents' packages and their static configuration from the
//! host, and whether it carries a Docker engine; and from them the Dockerfile, the image's
//! tag (a checksum of all of them) and the build context.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;

use super::agent_config;
use super::agents::{self, Agent};
use super::arch::BoxArch;
use super::browser;

const DOCKERFILE: &str = include_str!("../../../Dockerfile.box");
const SHIM_GIT: &str = include_str!("../../../box/shims/git");
const SHIM_GH: &str = include_str!("../../../box/shims/gh");
const INSTALL_AGENTS: &str = include_str!("../../../box/install-agents");
const CLAUDE_HOOKS: &str = include_str!("../../../box/agents/claude-managed-settings.json");
const OPENCODE_PLUGIN: &str = include_str!("../../../box/agents/opencode-agentbox.js");
const START_DIND: &str = include_str!("../../../box/dind");

/// The agents an image carries unless told otherwise.
pub const DEFAULT_AGENTS: &str = "claude,codex,opencode";

/// The blake3 of a cached package. Kept beside it (`<file>.blake3`, with the size and
/// modification time it was taken at), so that `create`'s freshness check does not read
/// hundreds of megabytes each time.
fn package_digest(path: &std::path::Path) -> anyhow::Result<[u8; 32]> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let stamp = format!("{} {mtime}", meta.len());
    let mut sidecar = path.as_os_str().to_owned();
    sidecar.push(".blake3");
    let sidecar = PathBuf::from(sidecar);
    if let Ok(text) = std::fs::read_to_string(&sidecar) {
        if let Some((kept, hex)) = text.trim().rsplit_once(' ') {
            if kept == stamp {
                if let Ok(hash) = blake3::Hash::from_hex(hex) {
                    return Ok(*hash.as_bytes());
                }
            }
        }
    }
    let mut file = std::fs::File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let hash = hasher.finalize();
    // Best effort: without it the next check reads the file again.
    let _ = std::fs::write(&sidecar, format!("{stamp} {}\n", hash.to_hex()));
    Ok(*hash.as_bytes())
}

/// How [`Inputs::gather`] finds agent packages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packages {
    /// Ask the registry for the latest release (and fetch it unless cached).
    Latest,
    /// Only what is cached (for telling whether a pinned image is stale, offline).
    Cached,
}

/// Everything an image is built from.
#[derive(Debug)]
pub struct Inputs {
    base: String,
    agents: Vec<Agent>,
    dind: bool,
    /// The browser's npm packages when the image carries the browser (`--browser`).
    browser: Option<Vec<browser::Package>>,
    packages: Vec<(Agent, PathBuf)>,
    config: Vec<agent_config::ConfigFile>,
    ctl: Vec<u8>,
    relay: Vec<u8>,
}

impl Inputs {
    /// The inputs of an image on `base` with `agents` for boxes of `arch`: static box
    /// binaries of that architecture (refused when there are none), the agents' packages,
    /// the host's agent configuration under `$HOME`.
    pub fn gather(
        base: &str,
        agents: &[Agent],
        packages: Packages,
        arch: BoxArch,
    ) -> anyhow::Result<Self> {
        let bins = super::binaries::find(arch)?;
        let mut found = Vec::new();
        for &agent in agents {
            let path = match packages {
                Packages::Latest => agents::fetch(agent)?,
                Packages::Cached => agents::cached(agent)
                    .with_context(|| format!("no {} package is cached", agent.name()))?,
            };
            found.push((agent, path));
        }
        let config = std::env::var_os("HOME")
            .map(|h| agent_config::collect(std::path::Path::new(&h)))
            .unwrap_or_default();
        Ok(Self {
            base: base.to_string(),
            agents: agents.to_vec(),
            dind: false,
            browser: None,
            packages: found,
            config,
            ctl: std::fs::read(&bins.ctl)
                .with_context(|| format!("cannot read {}", bins.ctl.display()))?,
            relay: std::fs::read(&bins.relay)
                .with_context(|| format!("cannot read {}", bins.relay.display()))?,
        })
    }

    /// The same inputs with a Docker engine in the image (`prepare --dind`) or without.
    #[must_use]
    pub fn with_dind(mut self, dind: bool) -> Self {
        self.dind = dind;
        self
    }

    /// The same inputs with the browser and its screen (`prepare --browser`), its packages
    /// fetched (`Latest`) or as cached, or without.
    pub fn with_browser(mut self, on: bool, packages: Packages) -> anyhow::Result<Self> {
        self.browser = match (on, packages) {
            (false, _) => None,
            (true, Packages::Latest) => Some(browser::fetch()?),
            (true, Packages::Cached) => Some(
                browser::cached().context("the browser's packages (Playwright) are not cached")?,
            ),
        };
        Ok(self)
    }

    /// Whether the image carries the browser and its screen.
    pub fn browser(&self) -> bool {
        self.browser.is_some()
    }

    /// Whether the image carries a Docker engine for `create --dind`.
    pub fn dind(&self) -> bool {
        self.dind
    }

    /// The base image.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The agents it carries, in `AGENTS=` form.
    pub fn agents_text(&self) -> String {
        agents::list_text(&self.agents)
    }

    /// `Dockerfile.box` with this image's base, agents and engine choice as its defaults,
    /// so that a builder needs no build arguments.
    pub fn dockerfile(&self) -> String {
        let text = if self.browser.is_some() {
            DOCKERFILE.to_string()
        } else {
            browser::strip(DOCKERFILE)
        };
        text.replacen(
            "ARG BASE_IMAGE=debian:bookworm-slim",
            &format!("ARG BASE_IMAGE={}", self.base),
            1,
        )
        // Both stages declare it: the one that installs, the one that labels.
        .replace(
            &format!("ARG AGENTS={DEFAULT_AGENTS}"),
            &format!("ARG AGENTS={}", self.agents_text()),
        )
        .replacen(
            "ARG DIND=no",
            if self.dind {
                "ARG DIND=yes"
            } else {
                "ARG DIND=no"
            },
            1,
        )
    }

    /// The image tag: `agentbox-box:` and a checksum of every input.
    pub fn tag(&self) -> anyhow::Result<String> {
        let mut hasher = blake3::Hasher::new();
        let mut part = |bytes: &[u8]| {
            hasher.update(&(bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        part(self.dockerfile().as_bytes());
        for fixed in [
            SHIM_GIT,
            SHIM_GH,
            INSTALL_AGENTS,
            CLAUDE_HOOKS,
            OPENCODE_PLUGIN,
            START_DIND,
        ] {
            part(fixed.as_bytes());
        }
        part(&self.ctl);
        part(&self.relay);
        // Only when baked: an image without the browser keeps the tag it always had.
        if let Some(packages) = &self.browser {
            part(browser::SCREEN_SCRIPT.as_bytes());
            part(browser::SETUP_SCRIPT.as_bytes());
            for p in packages {
                part(p.name.as_bytes());
                part(&package_digest(&p.path)?);
            }
        }
        for f in &self.config {
            part(f.path.as_bytes());
            part(&f.data);
            part(&f.mode.to_le_bytes());
        }
        for (agent, path) in &self.packages {
            part(agent.name().as_bytes());
            part(&package_digest(path)?);
        }
        Ok(format!(
            "agentbox-box:{}",
            &hasher.finalize().to_hex()[..16]
        ))
    }

    /// The build context as a tar: what the Dockerfile's `COPY`s read, and the Dockerfile
    /// itself when `with_dockerfile` (Daytona takes it separately).
    pub fn context_tar(&self, with_dockerfile: bool) -> anyhow::Result<Vec<u8>> {
        let mut context = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8], mode: u32| -> std::io::Result<()> {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(mode);
            h.set_mtime(0);
            h.set_cksum();
            context.append_data(&mut h, name, data)
        };
        if with_dockerfile {
            add("Dockerfile", self.dockerfile().as_bytes(), 0o644)?;
        }
        add("agentbox-ctl", &self.ctl, 0o755)?;
        add("agentbox-relay", &self.relay, 0o755)?;
        add("shims/git", SHIM_GIT.as_bytes(), 0o755)?;
        add("shims/gh", SHIM_GH.as_bytes(), 0o755)?;
        add("install-agents", INSTALL_AGENTS.as_bytes(), 0o755)?;
        add("dind", START_DIND.as_bytes(), 0o755)?;
        add(
            "agentbox-agents/claude-managed-settings.json",
            CLAUDE_HOOKS.as_bytes(),
            0o644,
        )?;
        add(
            "agentbox-agents/opencode-agentbox.js",
            OPENCODE_PLUGIN.as_bytes(),
            0o644,
        )?;
        // The baked list, which also keeps the directory in the context when it is empty.
        let listing: String = self.config.iter().fold(String::new(), |mut s, f| {
            s.push_str(&f.path);
            s.push('\n');
            s
        });
        add(
            "agent-home/.agentbox/baked-config",
            listing.as_bytes(),
            0o644,
        )?;
        for f in &self.config {
            add(&format!("agent-home/{}", f.path), &f.data, f.mode)?;
        }
        if let Some(packages) = &self.browser {
            add("screen", browser::SCREEN_SCRIPT.as_bytes(), 0o755)?;
            add("browser-setup", browser::SETUP_SCRIPT.as_bytes(), 0o755)?;
            add(
                "browser/packages",
                browser::listing(packages).as_bytes(),
                0o644,
            )?;
        }
        add("agents/.keep", b"", 0o644)?;
        let browser_files = self
            .browser
            .iter()
            .flatten()
            .map(|p| (format!("browser/{}", p.file_name()), &p.path));
        let agent_files = self
            .packages
            .iter()
            .map(|(agent, path)| (format!("agents/{}.tgz", agent.name()), path));
        for (name, path) in agent_files.chain(browser_files) {
            let mut file = std::fs::File::open(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let mut h = tar::Header::new_gnu();
            h.set_size(file.metadata()?.len());
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_cksum();
            context.append_data(&mut h, name, &mut file)?;
        }
        Ok(context.into_inner()?)
    }
}

#[cfg(test)]
mod tests {
    fn inputs(dind: bool) -> super::Inputs {
        super::Inputs {
            base: "debian:bookworm-slim".into(),
            agents: Vec::new(),
            dind: false,
            browser: None,
            packages: Vec::new(),
            config: Vec::new(),
            ctl: b"ctl".to_vec(),
            relay: b"relay".to_vec(),
        }
        .with_dind(dind)
    }

    #[test]
    fn the_agents_and_engine_choices_are_in_the_dockerfile_and_the_tag() {
        let (plain, dind) = (inputs(false), inputs(true));
        // No agents: both stages' AGENTS say so (one installs, one labels the image).
        assert_eq!(plain.dockerfile().matches("\nARG AGENTS=none\n").count(), 2);
        // The substitution must find its line: a renamed ARG would silently build without.
        assert!(plain.dockerfile().contains("\nARG DIND=no\n"));
        assert!(dind.dockerfile().contains("\nARG DIND=yes\n"));
        assert!(!dind.dockerfile().contains("ARG DIND=no"));
        assert_ne!(
            plain.tag().expect("tag"),
            dind.tag().expect("tag"),
            "an image with an engine must not pass for one without"
        );
    }

    #[test]
    fn the_browser_is_in_the_dockerfile_context_and_tag_only_when_baked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tgz = dir.path().join("browser-playwright-core-1.tgz");
        std::fs::write(&tgz, b"package").expect("write");
        let plain = inputs(false);
        let mut with = inputs(false);
        with.browser = Some(vec![super::browser::Package {
            name: "playwright-core",
            path: tgz,
        }]);
        // Without: not a word of it, so the image is the one it always was.
        assert!(!plain.dockerfile().contains("browser"));
        assert!(with
            .dockerfile()
            .contains("\nLABEL dev.agentbox.browser=yes\n"));
        assert_ne!(plain.tag().expect("tag"), with.tag().expect("tag"));
        let names = |i: &super::Inputs| -> Vec<String> {
            let tar = i.context_tar(true).expect("context");
            let mut archive = tar::Archive::new(&tar[..]);
            archive
                .entries()
                .expect("entries")
                .map(|e| {
                    e.expect("entry")
                        .path()
                        .expect("path")
                        .display()
                        .to_string()
                })
                .collect()
        };
        assert!(!names(&plain)
            .iter()
            .any(|n| n.contains("browser") || n == "screen"));
        let baked = names(&with);
        for wanted in [
            "screen",
            "browser-setup",
            "browser/packages",
            "browser/browser-playwright-core-1.tgz",
        ] {
            assert!(baked.iter().any(|n| n == wanted), "{wanted} in {baked:?}");
        }
    }

    #[test]
    fn a_package_digest_is_kept_and_taken_again_only_when_the_file_changed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("claude-linux-x64-1.tgz");
        std::fs::write(&path, b"one").expect("write");
        let first = super::package_digest(&path).expect("digest");
        assert_eq!(first, *blake3::hash(b"one").as_bytes());
        assert!(dir.path().join("claude-linux-x64-1.tgz.blake3").is_file());
        assert_eq!(super::package_digest(&path).expect("again"), first);
        std::fs::write(&path, b"other").expect("write");
        assert_eq!(
            super::package_digest(&path).expect("changed"),
            *blake3::hash(b"other").as_bytes()
        );
    }
}
