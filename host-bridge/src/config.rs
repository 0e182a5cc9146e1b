//! Host configuration in layers: command-line flag > the repo's `agentbox.yaml`
//! `defaults:` > project (`AGENTBOX_HOME/projects/<id>/config.yaml`) > global
//! (`AGENTBOX_HOME/config.yaml`) > built-in. Files hold flat `key: value` lines; keys are
//! checked against the list of known keys, values against their type.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

use position::located;

mod position;

/// A known key: name, description, built-in default, validator.
pub struct Key {
    /// Dotted name.
    pub name: &'static str,
    /// One line for `config list`.
    pub help: &'static str,
    /// Built-in default.
    pub default: Option<&'static str>,
    check: fn(&str) -> Result<(), String>,
}

#[allow(clippy::unnecessary_wraps)] // every validator has the same signature
fn any(_: &str) -> Result<(), String> {
    Ok(())
}

fn provider(v: &str) -> Result<(), String> {
    match v {
        "local" | "docker" | "daytona" => Ok(()),
        _ => Err(format!(
            "`{v}` is not a provider: use local, docker or daytona"
        )),
    }
}

fn var_names(v: &str) -> Result<(), String> {
    match v
        .split(',')
        .map(str::trim)
        .find(|n| !crate::credentials::valid_var_name(n))
    {
        Some(bad) => Err(format!(
            "`{bad}` is not an environment variable name (comma-separated names, e.g. ANTHROPIC_API_KEY,OPENAI_API_KEY)"
        )),
        None => Ok(()),
    }
}

fn agents(v: &str) -> Result<(), String> {
    crate::image::agents::parse_list(&crate::image::browser::split_agents(v).0).map(|_| ())
}

fn yes_no(v: &str) -> Result<(), String> {
    match v {
        "yes" | "no" => Ok(()),
        _ => Err(format!("`{v}` is not yes or no")),
    }
}

fn count(v: &str) -> Result<(), String> {
    v.parse::<u32>()
        .map(|_| ())
        .map_err(|_| format!("`{v}` is not a whole number"))
}

fn size(v: &str) -> Result<(), String> {
    v.parse::<crate::provider::size::Size>().map(|_| ())
}

fn bytes(v: &str) -> Result<(), String> {
    v.parse::<u64>()
        .map(|_| ())
        .map_err(|_| format!("`{v}` is not a byte count"))
}

fn port(v: &str) -> Result<(), String> {
    match v.parse::<u16>() {
        Ok(p) if p != 0 => Ok(()),
        _ => Err(format!("`{v}` is not a port (1-65535)")),
    }
}

fn verdict(v: &str) -> Result<(), String> {
    match v {
        "allow" | "ask" | "deny" => Ok(()),
        _ => Err(format!("`{v}` is not a policy: use allow, ask or deny")),
    }
}

/// Whether a key is part of the host's policy, which only host config may set (never a
/// repository's `agentbox.yaml`, which the box can influence).
pub fn is_policy_key(name: &str) -> bool {
    name.starts_with("policy.")
        || name.starts_with("approvals.")
        || name == "agents.forwardEnv"
        // Where boxes run (a local box runs agentbox.yaml's commands on this machine) and
        // how much a box may send: a repository a box can edit must not choose them.
        || name == "box.provider"
        || name == "transfer.maxBytes"
        // What a Daytona box costs while idle: 0 would keep one billing forever.
        || name == "box.autoStopMinutes"
}

/// Whether a key is this machine's, read from the global config only (what one
/// `AGENTBOX_HOME` runs once for every project, such as its HTTPS proxy).
pub fn is_machine_key(name: &str) -> bool {
    name == "proxy.port"
}

/// Every key agentbox reads.
pub const KEYS: &[Key] = &[
    Key {
        name: "policy.notify",
        help: "box notifications: allow, ask or deny",
        default: Some("allow"),
        check: verdict,
    },
    Key {
        name: "policy.open",
        help: "box requests to open http(s) URLs: allow, ask or deny",
        default: Some("allow"),
        check: verdict,
    },
    Key {
        name: "policy.pushOwnBranch",
        help: "pushes of the box's own agentbox/<box> branch: allow, ask or deny",
        default: Some("allow"),
        check: verdict,
    },
    Key {
        name: "policy.pushOtherBranch",
        help: "pushes of any other branch: allow, ask or deny",
        default: Some("ask"),
        check: verdict,
    },
    Key {
        name: "policy.fetch",
        help: "git fetch/pull through the host into the box: allow, ask or deny",
        default: Some("allow"),
        check: verdict,
    },
    Key {
        name: "policy.prCreate",
        help: "`gh pr create` for the box's branch: allow, ask or deny",
        default: Some("ask"),
        check: verdict,
    },
    Key {
        name: "policy.prRead",
        help: "`gh pr view|list`: allow, ask or deny",
        default: Some("allow"),
        check: verdict,
    },
    Key {
        name: "policy.copyToHost",
        help: "`agentbox-ctl cp --to-host` into the project: allow, ask or deny",
        default: Some("ask"),
        check: verdict,
    },
    Key {
        name: "policy.copyFromHost",
        help: "`agentbox-ctl cp --from-host` out of the project: allow, ask or deny",
        default: Some("ask"),
        check: verdict,
    },
    Key {
        name: "approvals.ttlSeconds",
        help: "how long a request waits for `agentbox approve` before it is refused",
        default: Some("900"),
        check: count,
    },
    Key {
        name: "agents.forwardEnv",
        help: "API keys from this machine's environment that agent sessions get, e.g. ANTHROPIC_API_KEY,OPENAI_API_KEY (host config only)",
        default: None,
        check: var_names,
    },
    Key {
        name: "box.provider",
        help: "where boxes run: local, docker or daytona",
        default: Some("local"),
        check: provider,
    },
    Key {
        name: "box.bundleDepth",
        help: "history depth of the seed clone (0 = all)",
        default: Some("200"),
        check: count,
    },
    Key {
        name: "box.image",
        help: "docker image of boxes (written by `prepare`)",
        default: None,
        check: any,
    },
    Key {
        name: "box.baseImage",
        help: "base image for `prepare`",
        default: None,
        check: any,
    },
    Key {
        name: "box.agents",
        help: "agents baked into the box image: claude,codex,opencode or none",
        default: Some("claude,codex,opencode"),
        check: agents,
    },
    Key {
        name: "box.browser",
        help: "whether `prepare` bakes a browser and a screen into the box image (for `agentbox screen`): yes or no",
        default: Some("no"),
        check: yes_no,
    },
    Key {
        name: "box.dind",
        help: "whether `prepare` bakes a Docker engine into the box image (for `create --dind`): yes or no",
        default: Some("no"),
        check: yes_no,
    },
    Key {
        name: "box.imageDaytona",
        help: "Daytona snapshot of boxes (written by `prepare`)",
        default: None,
        check: any,
    },
    Key {
        name: "box.size",
        help: "CPU-MEM-DISK of new boxes, e.g. 2-4-8",
        default: None,
        check: any,
    },
    Key {
        name: "box.sizeDaytona",
        help: "CPU-MEM-DISK (vCPUs, GB, GB) of Daytona boxes and the snapshot `prepare` bakes, e.g. 4-8-20 (over box.size; default: the snapshot's, 2-4-8)",
        default: None,
        check: size,
    },
    Key {
        name: "box.autoStopMinutes",
        help: "minutes a Daytona box may sit idle (no agent working, no transfer or attach) before Daytona stops it and its billing; 0 never stops it",
        default: Some("30"),
        check: count,
    },
    Key {
        name: "transfer.maxBytes",
        help: "largest file transfer accepted from a box, in bytes",
        default: Some("1073741824"),
        check: bytes,
    },
    Key {
        name: "proxy.port",
        help: "port of the HTTPS proxy of https://<box>.localhost addresses, global config only (AGENTBOX_PROXY_PORT wins; unset: 443 if it may be bound, else 8443)",
        default: None,
        check: port,
    },
    Key {
        name: "box.defaultCheckpointDaytona",
        help: "checkpoint new Daytona boxes start from",
        default: None,
        check: any,
    },
];

/// Looks a key up; the error names the known keys.
pub fn key(name: &str) -> Result<&'static Key, String> {
    KEYS.iter().find(|k| k.name == name).ok_or_else(|| {
        let known: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
        format!(
            "unknown config key `{name}`; known keys: {}",
            known.join(", ")
        )
    })
}

/// Validates a value for a key.
pub fn check(name: &str, value: &str) -> Result<(), String> {
    (key(name)?.check)(value).map_err(|e| format!("{name}: {e}"))
}

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// A command-line flag.
    Flag,
    /// `defaults:` in the repo's agentbox.yaml.
    Repo,
    /// The project config.
    Project,
    /// The global config.
    Global,
    /// Built in.
    Default,
}

impl Layer {
    /// Name for output.
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Flag => "flag",
            Layer::Repo => "agentbox.yaml",
            Layer::Project => "project",
            Layer::Global => "global",
            Layer::Default => "built-in",
        }
    }
}

/// Reads a flat config file; a missing file is empty. Nested mappings are flattened to
/// dotted keys so that `box: {provider: x}` and `box.provider: x` mean the same.
pub fn read_file(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let text = match agentbox_protocol::yaml_guard::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let docs = load_bounded(&text, path)?;
    let mut out = BTreeMap::new();
    if let Some(doc) = docs.first() {
        flatten(doc, "", &mut out).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(out)
}

/// Loads YAML that may come from a repository or a box: refused first when it is too
/// large, too deep or an alias bomb ([`agentbox_protocol::yaml_guard`]), since the loader
/// copies an anchor for every alias.
fn load_bounded(text: &str, path: &Path) -> Result<Vec<Yaml>, String> {
    agentbox_protocol::yaml_guard::check(text).map_err(|e| {
        if e.line == 0 {
            format!("{}: {}", path.display(), e.message)
        } else {
            format!("{}:{}:{}: {}", path.display(), e.line, e.col, e.message)
        }
    })?;
    YamlLoader::load_from_str(text).map_err(|e| format!("{}: {e}", path.display()))
}

fn scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn flatten(y: &Yaml, prefix: &str, out: &mut BTreeMap<String, String>) -> Result<(), String> {
    match y {
        Yaml::Hash(h) => {
            for (k, v) in h {
                let k = scalar(k).ok_or("keys must be strings")?;
                let full = if prefix.is_empty() {
                    k
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(v, &full, out)?;
            }
            Ok(())
        }
        Yaml::Null => Ok(()),
        other => {
            let v = scalar(other).ok_or_else(|| format!("`{prefix}` must be a plain value"))?;
            out.insert(prefix.to_string(), v);
            Ok(())
        }
    }
}

/// Writes a flat config file atomically.
pub fn write_file(path: &Path, values: &BTreeMap<String, String>) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    use std::fmt::Write;
    let mut text =
        String::from("# agentbox config: `agentbox config set KEY VALUE` edits this file\n");
    for (k, v) in values {
        let _ = writeln!(
            text,
            "{k}: {}",
            serde_json::to_string(v).unwrap_or_default()
        );
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// The repo's `agentbox.yaml` `defaults:` section (other sections are the box's).
pub fn read_repo_defaults(repo: &Path) -> Result<BTreeMap<String, String>, String> {
    let path = repo.join("agentbox.yaml");
    let Ok(text) = agentbox_protocol::yaml_guard::read(&path) else {
        return Ok(BTreeMap::new());
    };
    let docs = load_bounded(&text, &path)?;
    let mut out = BTreeMap::new();
    if let Some(defaults) = docs
        .first()
        .map(|d| &d["defaults"])
        .filter(|d| !d.is_badvalue())
    {
        flatten(defaults, "", &mut out)
            .map_err(|e| format!("{}: defaults: {e}", path.display()))?;
    }
    Ok(out)
}

/// The resolved configuration of one invocation.
pub struct Resolved {
    layers: Vec<(Layer, BTreeMap<String, String>)>,
}

impl Resolved {
    /// Loads every layer. `flags` are the values given on the command line.
    /// A bad value is refused as `FILE:LINE:COL: key: why` (`flag config: …` for a flag).
    pub fn load(
        global: &Path,
        project: Option<&PathBuf>,
        repo: Option<&Path>,
        flags: BTreeMap<String, String>,
    ) -> Result<Self, String> {
        let mut layers = vec![(Layer::Flag, flags)];
        // Each layer's file and the prefix of its keys there, for the errors.
        let mut files: Vec<Option<(PathBuf, &str)>> = vec![None];
        if let Some(repo) = repo {
            layers.push((Layer::Repo, read_repo_defaults(repo)?));
            files.push(Some((repo.join("agentbox.yaml"), "defaults.")));
        }
        if let Some(project) = project {
            layers.push((Layer::Project, read_file(project)?));
            files.push(Some((project.clone(), "")));
        }
        layers.push((Layer::Global, read_file(global)?));
        files.push(Some((global.to_path_buf(), "")));
        let defaults = KEYS
            .iter()
            .filter_map(|k| Some((k.name.to_string(), k.default?.to_string())))
            .collect();
        layers.push((Layer::Default, defaults));
        files.push(None);
        for ((layer, values), file) in layers.iter().zip(&files) {
            for (k, v) in values {
                let at = || match file {
                    Some((path, prefix)) => located(path, &format!("{prefix}{k}")),
                    None => format!("{} config", layer.as_str()),
                };
                if *layer == Layer::Repo && is_policy_key(k) {
                    return Err(format!(
                        "agentbox.yaml: defaults may not set `{k}`: the policy comes from host config only"
                    ));
                }
                if matches!(layer, Layer::Repo | Layer::Project) && is_machine_key(k) {
                    return Err(format!(
                        "{}: `{k}` is this machine's, read from the global config only: `agentbox config set --global {k} VALUE`",
                        at()
                    ));
                }
                if *layer != Layer::Default {
                    check(k, v).map_err(|e| format!("{}: {e}", at()))?;
                }
            }
        }
        Ok(Self { layers })
    }

    /// The effective value and where it came from.
    pub fn get(&self, key: &str) -> Option<(&str, Layer)> {
        self.layers
            .iter()
            .find_map(|(layer, values)| values.get(key).map(|v| (v.as_str(), *layer)))
    }

    /// Every layer's value of `key`, highest first.
    pub fn all(&self, key: &str) -> Vec<(Layer, Option<&str>)> {
        self.layers
            .iter()
            .map(|(layer, values)| (*layer, values.get(key).map(String::as_str)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_resolve_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let global = dir.path().join("g.yaml");
        let project = dir.path().join("p.yaml");
        std::fs::write(&global, "box.provider: docker\nbox.bundleDepth: 10\n").expect("write");
        std::fs::write(&project, "box:\n  bundleDepth: 20\n").expect("write");
        std::fs::write(
            dir.path().join("agentbox.yaml"),
            "defaults:\n  box.bundleDepth: 30\nservices: {}\n",
        )
        .expect("write");
        let r = Resolved::load(&global, Some(&project), Some(dir.path()), BTreeMap::new())
            .expect("load");
        assert_eq!(r.get("box.provider"), Some(("docker", Layer::Global)));
        assert_eq!(r.get("box.bundleDepth"), Some(("30", Layer::Repo)));
        let flags = BTreeMap::from([("box.provider".to_string(), "local".to_string())]);
        let r = Resolved::load(&global, Some(&project), Some(dir.path()), flags).expect("load");
        assert_eq!(r.get("box.provider"), Some(("local", Layer::Flag)));
        assert_eq!(
            r.all("box.bundleDepth")
                .iter()
                .filter(|(_, v)| v.is_some())
                .count(),
            4
        );
    }

    #[test]
    fn bad_values_and_keys_are_refused() {
        assert!(check("box.provider", "aws")
            .expect_err("bad")
            .contains("not a provider"));
        assert!(check("box.bundleDepth", "-1").is_err());
        assert!(check("box.nope", "1")
            .expect_err("bad")
            .contains("known keys"));
    }

    #[test]
    fn a_bad_value_is_refused_where_it_is() {
        let dir = tempfile::tempdir().expect("tempdir");
        let global = dir.path().join("config.yaml");
        std::fs::write(&global, "box.provider: docker\nproxy:\n  port: 99999\n").expect("write");
        let e = Resolved::load(&global, None, None, BTreeMap::new())
            .err()
            .expect("refused");
        assert_eq!(
            e,
            format!(
                "{}:3:9: proxy.port: `99999` is not a port (1-65535)",
                global.display()
            )
        );
        std::fs::write(&global, "proxy.port: 9443\n").expect("write");
        let r = Resolved::load(&global, None, None, BTreeMap::new()).expect("loads");
        assert_eq!(r.get("proxy.port"), Some(("9443", Layer::Global)));
        // A machine's key in a project's config: refused, saying where it goes.
        let project = dir.path().join("p.yaml");
        std::fs::write(&project, "# mine\nproxy.port: 9443\n").expect("write");
        let e = Resolved::load(&global, Some(&project), None, BTreeMap::new())
            .err()
            .expect("refused");
        assert!(
            e.starts_with(&format!("{}:2:13: `proxy.port`", project.display()))
                && e.contains("agentbox config set --global proxy.port"),
            "{e}"
        );
    }

    #[test]
    fn write_then_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c/config.yaml");
        let values = BTreeMap::from([("box.image".to_string(), "a:b \"quoted\"".to_string())]);
        write_file(&path, &values).expect("write");
        assert_eq!(read_file(&path).expect("read"), values);
    }
}
