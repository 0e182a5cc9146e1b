//! From the YAML tree to a [`Config`]: every rule of the `agentbox.yaml` schema.
//!
//! All errors are collected (not just the first), each at the position of the offending
//! node. Unknown keys are warnings.
//!
//! It stays one file (about 600 lines) on purpose: it is the schema, key lists and rules
//! side by side, so that a reader sees every rule of `agentbox.yaml` in one place; the
//! rule-free typed readers are in [`super::reader`].

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use agentbox_protocol::ctl::UnitKind;

use super::error::Diagnostic;
use super::reader::Reader;
use super::spec::{
    Backoff, Command, Config, Expose, OnTimeout, Probe, ProbeKind, RestartPolicy, RunOnce, UnitSpec,
};
use super::yaml::{parse_bool, Node, Pos};
use crate::http_target::HttpTarget;

const TOP_KEYS: &[&str] = &[
    "services",
    "tasks",
    "ide",
    "defaults",
    "carry",
    "replacements",
];
const SERVICE_KEYS: &[&str] = &[
    "command",
    "image",
    "cwd",
    "env",
    "autostart",
    "restart",
    "backoff",
    "needs",
    "ready_when",
    "expose",
    "ide",
    "stop_grace_ms",
];
const TASK_KEYS: &[&str] = &[
    "command",
    "cwd",
    "env",
    "needs",
    "run_once",
    "ide",
    "stop_grace_ms",
];
const SERVICE_ONLY_KEYS: &[&str] = &[
    "autostart",
    "restart",
    "backoff",
    "ready_when",
    "expose",
    "image",
];
const PROBE_KEYS: &[&str] = &[
    "port",
    "host",
    "http",
    "expect_status",
    "log_match",
    "interval_ms",
    "initial_delay_ms",
    "timeout_ms",
    "on_timeout",
];
const BACKOFF_KEYS: &[&str] = &["initial_ms", "max_ms", "factor", "reset_after_ms"];
const EXPOSE_KEYS: &[&str] = &["port", "as", "default"];

/// Reads the document; returns the config (valid only when the error list is empty).
pub(super) fn read(root: Option<&Node>) -> (Config, Vec<Diagnostic>) {
    let mut schema = Schema::default();
    let mut config = Config::default();
    if let Some(root) = root.filter(|n| !n.is_null()) {
        if let Some(top) = schema.r.fields(root, TOP_KEYS, "the top level") {
            for key in ["ide", "defaults"] {
                if let Some(node) = top.get(key) {
                    schema.r.expect_map(node, key);
                }
            }
            let mut names: HashSet<String> = HashSet::new();
            for (section, kind) in [("tasks", UnitKind::Task), ("services", UnitKind::Service)] {
                let Some(node) = top.get(section).filter(|n| !n.is_null()) else {
                    continue;
                };
                let Some(entries) = schema.r.entries(node, section) else {
                    continue;
                };
                for (key, value) in entries {
                    let Some(name) = schema.unit_name(key) else {
                        continue;
                    };
                    if !names.insert(name.clone()) {
                        schema.r.error(key.pos(), format!("`{name}` is defined twice (tasks and services share one namespace)"));
                        continue;
                    }
                    if let Some(unit) = schema.unit(&name, kind, value) {
                        config.units.push(unit);
                    }
                }
            }
            schema.settle_default_exposure(&mut config.units);
        }
    }
    config.warnings = schema.r.warnings;
    (config, schema.r.errors)
}

/// The reader of `agentbox.yaml`: a [`Reader`] and what the rules remember across units.
#[derive(Default)]
struct Schema {
    r: Reader,
    /// Position of the first service marked `default: true`.
    explicit_default: Option<Pos>,
}

impl Schema {
    fn unit_name(&mut self, key: &Node) -> Option<String> {
        match key {
            Node::Scalar { value, .. } if value.starts_with("agentbox-") => {
                self.r.error(key.pos(), format!("`{value}`: names starting with `agentbox-` are reserved for agentbox's own units"));
                None
            }
            Node::Scalar { value, .. } if is_name(value) => Some(value.clone()),
            Node::Scalar { value, .. } => {
                self.r.error(
                    key.pos(),
                    format!("invalid unit name `{value}`: use letters, digits, `_` and `-`"),
                );
                None
            }
            other => {
                self.r.error(other.pos(), "unit names must be strings");
                None
            }
        }
    }

    fn command(&mut self, node: &Node, what: &str) -> Option<Command> {
        match node {
            Node::Scalar { value, .. } if !node.is_null() && !value.trim().is_empty() => {
                Some(Command::Shell(value.clone()))
            }
            Node::Seq { items, .. } if !items.is_empty() => {
                let argv: Vec<String> = items
                    .iter()
                    .filter_map(|i| self.r.string(i, what))
                    .collect();
                (argv.len() == items.len()).then_some(Command::Argv(argv))
            }
            other => {
                self.r.error(
                    other.pos(),
                    format!(
                        "{what} must be a non-empty string or list, found {}",
                        other.describe()
                    ),
                );
                None
            }
        }
    }

    fn env(&mut self, node: &Node, what: &str) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        let Some(entries) = self.r.entries(node, what) else {
            return env;
        };
        for (key, value) in entries {
            let Some(name) = self.r.string(key, "an environment variable name") else {
                continue;
            };
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                self.r.error(
                    key.pos(),
                    format!("invalid environment variable name `{name}`"),
                );
                continue;
            }
            match value {
                Node::Scalar { value: v, .. } if !value.is_null() => {
                    if v.contains('\0') {
                        self.r
                            .error(value.pos(), format!("`{name}` contains a NUL byte"));
                    } else {
                        env.insert(name, v.clone());
                    }
                }
                other => self.r.error(
                    other.pos(),
                    format!(
                        "`{name}` in {what} must be a string, number or boolean, found {}",
                        other.describe()
                    ),
                ),
            }
        }
        env
    }

    fn needs(&mut self, node: &Node, unit: &str) -> Vec<String> {
        let items: Vec<&Node> = match node {
            Node::Seq { items, .. } => items.iter().collect(),
            n if n.is_null() => Vec::new(),
            other => {
                self.r.error(
                    other.pos(),
                    format!("`needs` of `{unit}` must be a list of unit names"),
                );
                return Vec::new();
            }
        };
        let mut needs: Vec<String> = Vec::new();
        for item in items {
            let Some(name) = self.r.string(item, "a `needs` entry") else {
                continue;
            };
            if !is_name(&name) {
                self.r
                    .error(item.pos(), format!("invalid unit name `{name}` in `needs`"));
            } else if name == unit {
                self.r
                    .error(item.pos(), format!("`{unit}` cannot need itself"));
            } else if !needs.contains(&name) {
                needs.push(name);
            }
        }
        needs
    }

    fn unit(&mut self, name: &str, kind: UnitKind, node: &Node) -> Option<UnitSpec> {
        let (allowed, label) = match kind {
            UnitKind::Service => (SERVICE_KEYS, format!("service `{name}`")),
            UnitKind::Task => (TASK_KEYS, format!("task `{name}`")),
        };
        // Service-only keys on a task: say why they are ignored instead of "unknown".
        if kind == UnitKind::Task {
            if let Node::Map { entries, .. } = node {
                for (k, _) in entries {
                    if let Node::Scalar { value, .. } = k {
                        if SERVICE_ONLY_KEYS.contains(&value.as_str()) {
                            self.r.warn(
                                k.pos(),
                                format!("`{value}` applies to services only; ignored for {label}"),
                            );
                        }
                    }
                }
            }
        }
        let allowed_here: Vec<&str> = if kind == UnitKind::Task {
            allowed
                .iter()
                .copied()
                .chain(SERVICE_ONLY_KEYS.iter().copied())
                .collect()
        } else {
            allowed.to_vec()
        };
        let f = self.r.fields(node, &allowed_here, &label)?;
        let errors_before = self.r.errors.len();

        if let Some(image) = f.get("image").filter(|_| kind == UnitKind::Service) {
            self.r.error(image.pos(), format!("{label}: `image` services are not supported; use `command: docker run …` instead"));
        }
        let command = match f.get("command") {
            Some(node) => self.command(node, &format!("`command` of {label}")),
            None => {
                self.r.error(f.pos, format!("{label} has no `command`"));
                None
            }
        };
        let cwd = f
            .get("cwd")
            .and_then(|n| self.r.string(n, &format!("`cwd` of {label}")));
        let env = f
            .get("env")
            .map(|n| self.env(n, &format!("`env` of {label}")))
            .unwrap_or_default();
        let needs = f
            .get("needs")
            .map(|n| self.needs(n, name))
            .unwrap_or_default();
        let stop_grace = f
            .get("stop_grace_ms")
            .and_then(|n| self.r.millis(n, "`stop_grace_ms`", 0))
            .unwrap_or(Duration::from_secs(5));

        let mut spec = UnitSpec {
            name: name.to_string(),
            kind,
            command: command.unwrap_or(Command::Argv(Vec::new())),
            cwd,
            env,
            needs,
            autostart: true,
            restart: RestartPolicy::OnFailure,
            backoff: Backoff::default(),
            ready_when: None,
            expose: None,
            run_once: None,
            stop_grace,
            pos: node.pos(),
        };
        match kind {
            UnitKind::Service => {
                if let Some(n) = f.get("autostart") {
                    spec.autostart = self.r.boolean(n, "`autostart`").unwrap_or(true);
                }
                if let Some(n) = f.get("restart") {
                    spec.restart = self.restart(n).unwrap_or(RestartPolicy::OnFailure);
                }
                if let Some(n) = f.get("backoff") {
                    spec.backoff = self.backoff(n, &label);
                }
                if let Some(n) = f.get("ready_when") {
                    spec.ready_when = self.probe(n, &label);
                }
                if let Some(n) = f.get("expose") {
                    spec.expose = self.expose(n, &label);
                }
            }
            UnitKind::Task => {
                if let Some(n) = f.get("run_once") {
                    spec.run_once = self.run_once(n, &label);
                }
            }
        }
        (self.r.errors.len() == errors_before).then_some(spec)
    }

    fn restart(&mut self, node: &Node) -> Option<RestartPolicy> {
        match self.r.string(node, "`restart`")?.as_str() {
            "always" => Some(RestartPolicy::Always),
            "on-failure" => Some(RestartPolicy::OnFailure),
            "never" => Some(RestartPolicy::Never),
            other => {
                self.r.error(
                    node.pos(),
                    format!("`restart` must be always, on-failure or never, found `{other}`"),
                );
                None
            }
        }
    }

    fn backoff(&mut self, node: &Node, label: &str) -> Backoff {
        let mut b = Backoff::default();
        let Some(f) = self
            .r
            .fields(node, BACKOFF_KEYS, &format!("`backoff` of {label}"))
        else {
            return b;
        };
        if let Some(n) = f.get("initial_ms") {
            b.initial = self
                .r
                .millis(n, "`backoff.initial_ms`", 0)
                .unwrap_or(b.initial);
        }
        if let Some(n) = f.get("max_ms") {
            b.max = self.r.millis(n, "`backoff.max_ms`", 0).unwrap_or(b.max);
        }
        if let Some(n) = f.get("factor") {
            match self.r.number(n, "`backoff.factor`") {
                Some(x) if x >= 1.0 => b.factor = x,
                Some(x) => self.r.error(
                    n.pos(),
                    format!("`backoff.factor` must be at least 1, found {x}"),
                ),
                None => {}
            }
        }
        if let Some(n) = f.get("reset_after_ms") {
            b.reset_after = self
                .r
                .millis(n, "`backoff.reset_after_ms`", 0)
                .unwrap_or(b.reset_after);
        }
        if b.max < b.initial {
            self.r.error(
                f.pos,
                format!(
                    "`backoff.max_ms` ({}) is below `initial_ms` ({})",
                    b.max.as_millis(),
                    b.initial.as_millis()
                ),
            );
        }
        b
    }

    fn probe(&mut self, node: &Node, label: &str) -> Option<Probe> {
        let what = format!("`ready_when` of {label}");
        let f = self.r.fields(node, PROBE_KEYS, &what)?;
        let kinds: Vec<&str> = ["port", "http", "log_match"]
            .into_iter()
            .filter(|k| f.get(k).is_some())
            .collect();
        if kinds.len() != 1 {
            self.r.error(
                f.pos,
                format!(
                    "{what} needs exactly one of `port`, `http` or `log_match`, found {}",
                    if kinds.is_empty() {
                        "none".to_string()
                    } else {
                        kinds.join(", ")
                    }
                ),
            );
            return None;
        }
        let kind_name = kinds[0];
        let misplaced: &[&str] = match kind_name {
            "port" => &["expect_status"],
            "http" => &["host"],
            _ => &["host", "expect_status", "interval_ms", "initial_delay_ms"],
        };
        for key in misplaced {
            if let Some(n) = f.get(key) {
                self.r.error(
                    n.pos(),
                    format!("`{key}` cannot be used with a `{kind_name}` probe"),
                );
            }
        }
        let kind = match kind_name {
            "port" => {
                let port = f
                    .get("port")
                    .and_then(|n| self.r.port(n, "`ready_when.port`"))?;
                let host = match f.get("host") {
                    Some(n) => self.r.string(n, "`ready_when.host`")?,
                    None => "127.0.0.1".to_string(),
                };
                ProbeKind::Port { host, port }
            }
            "http" => {
                let n = f.get("http")?;
                let url = self.r.string(n, "`ready_when.http`")?;
                if let Err(e) = HttpTarget::parse(&url) {
                    self.r.error(n.pos(), format!("`ready_when.http`: {e}"));
                    return None;
                }
                let expect_status = match f.get("expect_status") {
                    Some(n) => Some(self.r.integer(n, "`expect_status`", 100, 599)? as u16),
                    None => None,
                };
                ProbeKind::Http { url, expect_status }
            }
            _ => {
                let n = f.get("log_match")?;
                let source = self.r.string(n, "`ready_when.log_match`")?;
                match regex::Regex::new(&source) {
                    Ok(re) => ProbeKind::LogMatch(re),
                    Err(e) => {
                        // The regex crate's message spans lines; its last line says why.
                        let text = e.to_string();
                        let why = text
                            .lines()
                            .last()
                            .unwrap_or_default()
                            .trim_start_matches("error: ")
                            .to_string();
                        self.r
                            .error(n.pos(), format!("`log_match` is not a valid regex: {why}"));
                        return None;
                    }
                }
            }
        };
        let interval = f
            .get("interval_ms")
            .and_then(|n| self.r.millis(n, "`interval_ms`", 1));
        let initial_delay = f
            .get("initial_delay_ms")
            .and_then(|n| self.r.millis(n, "`initial_delay_ms`", 0));
        let timeout = f
            .get("timeout_ms")
            .and_then(|n| self.r.millis(n, "`timeout_ms`", 1));
        let on_timeout = match f.get("on_timeout") {
            Some(n) => match self.r.string(n, "`on_timeout`")?.as_str() {
                "kill" => OnTimeout::Kill,
                "mark_unhealthy" => OnTimeout::MarkUnhealthy,
                other => {
                    self.r.error(
                        n.pos(),
                        format!("`on_timeout` must be kill or mark_unhealthy, found `{other}`"),
                    );
                    return None;
                }
            },
            None => OnTimeout::Kill,
        };
        Some(Probe {
            kind,
            interval: interval.unwrap_or(Duration::from_millis(500)),
            initial_delay: initial_delay.unwrap_or(Duration::ZERO),
            timeout: timeout.unwrap_or(Duration::from_secs(60)),
            on_timeout,
        })
    }

    fn expose(&mut self, node: &Node, label: &str) -> Option<Expose> {
        let f = self
            .r
            .fields(node, EXPOSE_KEYS, &format!("`expose` of {label}"))?;
        let Some(port_node) = f.get("port") else {
            self.r
                .error(f.pos, format!("`expose` of {label} needs a `port`"));
            return None;
        };
        let port = self.r.port(port_node, "`expose.port`")?;
        if let Some(n) = f.get("as") {
            if self.r.integer(n, "`expose.as`", 1, 65535)? != 80 {
                self.r.error(n.pos(), "`expose.as` must be 80 (each exposed service is routed by name; see `default`)");
            }
        }
        let default = match f.get("default") {
            Some(n) => self.r.boolean(n, "`expose.default`")?,
            None => false,
        };
        if default {
            if let Some(first) = self.explicit_default {
                self.r.error(
                    node.pos(),
                    format!(
                        "only one service can be the default exposure (the first is at line {})",
                        first.line
                    ),
                );
                return None;
            }
            self.explicit_default = Some(node.pos());
        }
        Some(Expose { port, default })
    }

    /// With no `default: true`, the first exposed service is the default.
    fn settle_default_exposure(&mut self, units: &mut [UnitSpec]) {
        if self.explicit_default.is_none() {
            if let Some(e) = units.iter_mut().find_map(|u| u.expose.as_mut()) {
                e.default = true;
            }
        }
    }

    fn run_once(&mut self, node: &Node, label: &str) -> Option<RunOnce> {
        match node {
            Node::Scalar {
                value,
                quoted: false,
                ..
            } if parse_bool(value) == Some(true) => Some(RunOnce::Marker),
            Node::Scalar {
                value,
                quoted: false,
                ..
            } if parse_bool(value) == Some(false) => None,
            n if n.is_null() => None,
            Node::Map { .. } => {
                let f = self
                    .r
                    .fields(node, &["check"], &format!("`run_once` of {label}"))?;
                let Some(check) = f.get("check") else {
                    self.r
                        .error(f.pos, "`run_once` as a mapping needs `check: COMMAND`");
                    return None;
                };
                match self.r.string(check, "`run_once.check`") {
                    Some(c) if !c.trim().is_empty() => Some(RunOnce::Check(c)),
                    Some(_) => {
                        self.r
                            .error(check.pos(), "`run_once.check` must not be empty");
                        None
                    }
                    None => None,
                }
            }
            other => {
                self.r.error(
                    other.pos(),
                    format!(
                        "`run_once` must be true or {{check: COMMAND}}, found {}",
                        other.describe()
                    ),
                );
                None
            }
        }
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
