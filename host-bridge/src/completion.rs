//! Shell completion that knows this machine's boxes: the `agentbox` command with value
//! completers on its BOX, session and service arguments.
//!
//! `agentbox completions SHELL` prints a small script that asks `agentbox` itself for
//! candidates each time (`COMPLETE=SHELL agentbox -- agentbox …`, clap_complete's dynamic
//! completion), so new boxes, sessions and services complete without a new script.

use std::ffi::OsStr;

use clap::{Arg, Command, CommandFactory};
use clap_complete::engine::{ArgValueCandidates, CompletionCandidate};

use crate::cli::Cli;
use crate::home::Home;
use crate::provider::AnyBox;
use crate::state::{BoxRecord, State};

/// The environment variable that turns a run of `agentbox` into a completion request.
pub const VAR: &str = "COMPLETE";

/// The `agentbox` command line, with the completers attached.
pub fn command() -> Command {
    with_completers(Cli::command())
}

/// What an argument holds, as far as completion goes.
enum Kind {
    Box,
    Session,
    Service,
    Other,
}

/// Which candidates `arg` takes, from its id and value name.
fn kind(arg: &Arg) -> Kind {
    let value_name = arg
        .get_value_names()
        .and_then(|v| v.first())
        .map(|n| n.as_str().to_ascii_uppercase());
    match (arg.get_id().as_str(), value_name.as_deref()) {
        (_, Some("BOX")) => Kind::Box,
        ("session", _) | (_, Some("SESSION")) => Kind::Session,
        ("service" | "unit", _) | (_, Some("SERVICE" | "UNIT")) => Kind::Service,
        _ => Kind::Other,
    }
}

/// `cmd` and its subcommands with a completer on every box, session and service argument.
fn with_completers(cmd: Command) -> Command {
    cmd.mut_args(|arg| match kind(&arg) {
        Kind::Box => arg.add(ArgValueCandidates::new(boxes)),
        Kind::Session => arg.add(ArgValueCandidates::new(sessions)),
        Kind::Service => arg.add(ArgValueCandidates::new(services)),
        Kind::Other => arg,
    })
    .mut_subcommands(with_completers)
}

/// The box records, or none when they cannot be read (completion never fails loudly).
fn records() -> Vec<BoxRecord> {
    Home::from_env()
        .ok()
        .and_then(|home| State::open(&home.state_db()).ok())
        .and_then(|state| state.all().ok())
        .unwrap_or_default()
}

/// Every box name, with its provider and project as the help.
fn boxes() -> Vec<CompletionCandidate> {
    records()
        .into_iter()
        .map(|b| {
            CompletionCandidate::new(&b.name).help(Some(
                format!("{} box of {}", b.provider, b.project.display()).into(),
            ))
        })
        .collect()
}

/// The box named on the command line being completed (the first word that is a box
/// name), if it runs.
fn named_box() -> Option<AnyBox> {
    let records = records();
    let words: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let record = words
        .iter()
        .skip_while(|w| w.as_os_str() != OsStr::new("--"))
        .find_map(|w| {
            records
                .iter()
                .find(|b| OsStr::new(&b.name) == w.as_os_str())
        })?;
    AnyBox::open(record).ok().filter(AnyBox::running)
}

/// The JSON a `agentbox-ctl` command of the named box prints, if it answers.
fn ask_box(args: &[&str]) -> Option<serde_json::Value> {
    let out = named_box()?.ctl(args).ok()?;
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

/// The tmux sessions of the box on the command line.
fn sessions() -> Vec<CompletionCandidate> {
    let Some(list) = ask_box(&["session", "list", "--json"]) else {
        return Vec::new();
    };
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .map(CompletionCandidate::new)
        .collect()
}

/// The services of the box on the command line.
fn services() -> Vec<CompletionCandidate> {
    let Some(status) = ask_box(&["status", "--json"]) else {
        return Vec::new();
    };
    status["units"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|u| u["kind"] == "service")
        .filter_map(|u| u["name"].as_str())
        .map(CompletionCandidate::new)
        .collect()
}

/// The registration script of `shell` (bash, zsh, fish, elvish, powershell): it calls
/// `agentbox` (found on PATH) for the candidates.
pub fn script(shell: clap_complete::Shell) -> Result<Vec<u8>, std::io::Error> {
    let shells = clap_complete::env::Shells::builtins();
    let name = shell.to_string();
    let completer = shells
        .completer(&name)
        .ok_or_else(|| std::io::Error::other(format!("no completion for shell `{name}`")))?;
    let mut script = Vec::new();
    completer.write_registration(VAR, "agentbox", "agentbox", "agentbox", &mut script)?;
    Ok(script)
}
