//! `agentbox config get|set|unset|list`.

use std::collections::BTreeMap;
use std::process::ExitCode;

use super::context::Ctx;
use crate::cli::ConfigCmd;
use crate::config::{self, Layer};

/// `agentbox config …`.
pub fn config(ctx: &Ctx, cmd: ConfigCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCmd::Get { key, all } => {
            config::key(&key).map_err(anyhow::Error::msg)?;
            let cfg = ctx.resolved(BTreeMap::new())?;
            if all {
                for (layer, value) in cfg.all(&key) {
                    if layer != Layer::Flag {
                        println!("{:<14} {}", layer.as_str(), value.unwrap_or("-"));
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
            match cfg.get(&key) {
                Some((v, _)) => {
                    println!("{v}");
                    Ok(ExitCode::SUCCESS)
                }
                None => Ok(ExitCode::from(1)),
            }
        }
        ConfigCmd::Set { key, value, scope } => {
            config::check(&key, &value).map_err(anyhow::Error::msg)?;
            let path = file_of(ctx, &key, &scope)?;
            let mut values = config::read_file(&path).map_err(anyhow::Error::msg)?;
            values.insert(key, value);
            config::write_file(&path, &values)?;
            Ok(ExitCode::SUCCESS)
        }
        ConfigCmd::Unset { key, scope } => {
            config::key(&key).map_err(anyhow::Error::msg)?;
            let path = file_of(ctx, &key, &scope)?;
            let mut values = config::read_file(&path).map_err(anyhow::Error::msg)?;
            values.remove(&key);
            config::write_file(&path, &values)?;
            Ok(ExitCode::SUCCESS)
        }
        ConfigCmd::List { json } => {
            let cfg = ctx.resolved(BTreeMap::new())?;
            let rows: Vec<serde_json::Value> = config::KEYS
                .iter()
                .map(|k| {
                    let (value, layer) = cfg.get(k.name).map_or((None, None), |(v, l)| (Some(v), Some(l.as_str())));
                    serde_json::json!({ "key": k.name, "value": value, "from": layer, "help": k.help })
                })
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for r in rows {
                    println!(
                        "{:<30} {:<20} {:<14} {}",
                        r["key"].as_str().unwrap_or(""),
                        r["value"].as_str().unwrap_or("-"),
                        r["from"].as_str().unwrap_or(""),
                        r["help"].as_str().unwrap_or("")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The file `set`/`unset` of `key` edit: the scope's, except for a machine's key
/// ([`config::is_machine_key`]), which only the global config holds.
fn file_of(ctx: &Ctx, key: &str, scope: &crate::cli::Scope) -> anyhow::Result<std::path::PathBuf> {
    if !config::is_machine_key(key) {
        return ctx.config_file(scope);
    }
    if scope.project {
        anyhow::bail!(
            "`{key}` is this machine's, read from the global config only: leave out --project"
        );
    }
    Ok(ctx.home.config())
}

/// Sets each key to its value where `prepare` and `checkpoint --set-default` pin what
/// they made; returns the file. That is the project config file, except for a docker box
/// image (`box.image` among the pins), which is this machine's: its tag is the checksum of
/// its inputs and the engine holds it for every repository, so its pins (the image and
/// what was chosen for it) go into the global config, where another repository finds them
/// without building or being told `--base-image` again. The same keys in this project's
/// config (where an older `prepare` put them) would hide them there, so they go.
pub(crate) fn pin(ctx: &Ctx, pins: &[(&str, String)]) -> anyhow::Result<std::path::PathBuf> {
    let project = ctx.project_config_file()?;
    let machine = pins.iter().any(|(key, _)| *key == "box.image");
    let path = if machine {
        ctx.home.config()
    } else {
        project.clone()
    };
    if machine && project != path && project.is_file() {
        let mut values = config::read_file(&project).map_err(anyhow::Error::msg)?;
        let before = values.len();
        values.retain(|k, _| !pins.iter().any(|(key, _)| key == k));
        if values.len() != before {
            config::write_file(&project, &values)?;
            crate::transfer::progress::step(&format!(
                "this project's own image pins are gone from {}: the machine's apply",
                project.display()
            ));
        }
    }
    let mut values = config::read_file(&path).map_err(anyhow::Error::msg)?;
    for (key, value) in pins {
        values.insert((*key).to_string(), value.clone());
    }
    config::write_file(&path, &values)?;
    Ok(path)
}
