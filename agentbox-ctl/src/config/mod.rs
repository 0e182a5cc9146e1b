//! `agentbox.yaml`: the units a box runs.
//!
//! [`load`] reads a file into a [`Config`] or a list of `file:line:col: message` errors.
//! The schema is the original AgentBox's (services, tasks, needs, ready_when, restart,
//! backoff, autostart, expose, env, cwd, run_once) with two changes: several services may
//! be exposed (one may be `default: true`), and every error carries its position.
//! Unknown keys are warnings, for configs written for newer versions.
//!
//! - [`yaml`]: the YAML tree with positions; `reader`: typed values read out of it with
//!   every error collected; `schema`: the rules that turn it into a [`Config`];
//!   `graph`: the `needs` references and cycles checked.
//! - `spec`: the types a config is made of ([`UnitSpec`], [`Probe`], …); `error`:
//!   [`Diagnostic`] and [`ConfigError`].

mod error;
mod graph;
mod reader;
mod schema;
mod spec;
pub mod yaml;

use std::path::Path;

pub use error::{ConfigError, Diagnostic};
pub use spec::{
    Backoff, Command, Config, Expose, OnTimeout, Probe, ProbeKind, RestartPolicy, RunOnce, UnitSpec,
};
pub use yaml::Pos;

/// Reads and validates `path`. A missing file is an empty config; an unreadable one is an
/// error. Warnings carry their positions too.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    match agentbox_protocol::yaml_guard::read(path) {
        Ok(source) => parse_str(&source, path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
        Err(e) => Err(ConfigError {
            file: path.to_path_buf(),
            errors: vec![Diagnostic {
                pos: Pos::default(),
                message: format!("cannot read: {e}"),
            }],
        }),
    }
}

/// Parses config text; `file` is used in messages only.
pub fn parse_str(source: &str, file: &Path) -> Result<Config, ConfigError> {
    let fail = |errors| ConfigError {
        file: file.to_path_buf(),
        errors,
    };
    let root = match yaml::parse(source) {
        Ok(root) => root,
        Err(e) => {
            return Err(fail(vec![Diagnostic {
                pos: e.pos,
                message: e.message,
            }]))
        }
    };
    let (mut config, mut errors) = schema::read(root.as_ref());
    if errors.is_empty() {
        errors.extend(graph::check(&config.units));
    }
    if errors.is_empty() {
        let name = file.display();
        config.warnings = config
            .warnings
            .into_iter()
            .map(|w| format!("{name}:{w}"))
            .collect();
        Ok(config)
    } else {
        errors.sort_by_key(|d| (d.pos.line, d.pos.col));
        Err(fail(errors))
    }
}
